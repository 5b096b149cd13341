"""Typed records of parsed BIRD replies (BIRD 1.6 and 2.x). Plain data, no behaviour beyond views."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

STATUS_UP = "Daemon is up and running"


@dataclass(frozen=True, slots=True)
class GracefulRestartStatus:
    """The `0024` block of `show status` while BIRD recovers after a restart with `-R`."""

    message: str  # "Graceful restart recovery in progress"
    waiting_for: int | None  # protocols (1.6) or channels (2.x) still locking the recovery
    wait_timer: str | None  # "240/240" (1.6) or "239.953/240" (2.x), verbatim


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """`show status`. Times are BIRD's local-time text, verbatim."""

    version: str | None  # text after "BIRD ", e.g. "1.6.8" or "v0.3.3+birdv1.6.8"
    router_id: str | None
    hostname: str | None  # BIRD 2 only
    server_time: str | None
    last_reboot: str | None
    last_reconfiguration: str | None
    message: str  # final line: "Daemon is up and running", "Reconfiguration in progress", ...
    graceful_restart: GracefulRestartStatus | None

    @property
    def is_up(self) -> bool:
        """Running normally: not reconfiguring, not shutting down, not in graceful-restart recovery."""
        return self.message == STATUS_UP and self.graceful_restart is None


@dataclass(frozen=True, slots=True)
class Protocol:
    """One row of `show protocols`. `info` has its whitespace runs collapsed to single spaces."""

    name: str
    proto: str  # "BGP", "Kernel", "Device", "Direct", "Static", ...
    table: str  # "master" (1.6), "master4"/"master6"/"---" (2.x)
    state: str  # protocol state: up, start, wait, feed, stop, down, flush
    since: str
    info: str

    @property
    def bgp_state(self) -> str | None:
        """First word of the info column of a BGP row (`Established`, `Active`, `Passive`, ...)."""
        if self.proto != "BGP" or not self.info:
            return None
        return self.info.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class RouteStats:
    """`Routes: 3 imported, 1 exported, 3 preferred` (optionally `N filtered`)."""

    imported: int
    exported: int
    preferred: int
    filtered: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A BIRD 2 `Channel ipv4|ipv6` sub-block of `show protocols all`."""

    name: str
    state: str | None
    table: str | None
    routes: RouteStats | None


@dataclass(frozen=True, slots=True)
class ProtocolDetails:
    """One protocol of `show protocols all`: its row plus the detail lines we use."""

    protocol: Protocol
    description: str | None
    bgp_state: str | None  # "Established", "Active", "Passive", "Down", ...
    neighbor_address: str | None  # may carry "%iface" for link-local peers
    neighbor_as: int | None
    local_as: int | None
    neighbor_id: str | None
    last_error: str | None
    graceful_restart_active: bool  # "Neighbor graceful restart active": we are GR helper for it
    routes: RouteStats | None  # 1.6: per protocol; 2.x: sum over channels
    channels: tuple[ChannelInfo, ...]


class RouteKind(enum.StrEnum):
    VIA = "via"
    DEV = "dev"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBITED = "prohibited"


class NextHop(NamedTuple):
    gateway: str | None
    interface: str | None
    weight: int | None


class Route(NamedTuple):
    """One route of `show route`.

    A NamedTuple, not a dataclass: it is created up to hundreds of thousands of times per query,
    and tuple construction is several times cheaper than a frozen dataclass's __init__."""

    prefix: str
    kind: RouteKind
    gateway: str | None  # first next hop's gateway (VIA); None otherwise
    interface: str | None  # first next hop's interface (VIA/DEV); None otherwise
    protocol: str  # BIRD protocol name: "Mesh_198_18_0_2", "kernel1", ...
    primary: bool  # BIRD's `*` (or `!`) marker: the selected route for the prefix
    sync_error: bool  # BIRD's `!` marker: primary, but exporting it to the kernel failed
    table: str | None  # BIRD 2 table ("master4"); None for 1.6
    next_hops: tuple[NextHop, ...]  # every next hop when there are several (ECMP); else ()

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.prefix


@dataclass(frozen=True, slots=True)
class TableCount:
    """`15 of 15 routes for 13 networks [in table master4]`."""

    table: str | None
    routes: int  # routes matching the query
    total_routes: int
    networks: int


@dataclass(frozen=True, slots=True)
class RouteCount:
    """`show route count`: per-table lines (2.x) and the total (1.6 has only the total)."""

    tables: tuple[TableCount, ...]
    total: TableCount | None
