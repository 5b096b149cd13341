"""The single I/O entry point of collection: query BIRD once per needed command, per family, and
return the status sections plus what metrics, health and the doctor need.

BIRD 1.6 (Calico's generation) runs two daemons, `bird` (IPv4) and `bird6` (IPv6), each with its
own socket. BIRD 2 runs one daemon serving both families on one socket; its replies are split by
family here. A family whose daemon cannot be reached or fails is reported on its own: the other
family's data is always kept (upstream-gaps A1/A2).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from calico_nodestatus.api import CalicoNodeStatusStatus, NodeStatusClass
from calico_nodestatus.bird.client import (
    CALICO_SOCKETS_V4,
    CALICO_SOCKETS_V6,
    DEFAULT_DEADLINE,
    DEFAULT_READ_TIMEOUT,
    BirdClient,
)
from calico_nodestatus.bird.errors import BirdError, BirdReconfigurationInterrupt, BirdUnavailable
from calico_nodestatus.bird.types import DaemonStatus, ProtocolDetails
from calico_nodestatus.collect.sections import (
    DEFAULT_ROUTE_LIMIT,
    RouteAccumulator,
    RouteTally,
    bgp_by_family,
    status_sections,
)

ALL_CLASSES = (NodeStatusClass.AGENT, NodeStatusClass.BGP, NodeStatusClass.ROUTES)
FAMILIES = (4, 6)


@dataclass(frozen=True, slots=True)
class BirdSockets:
    """Socket paths to try per family, in order (Calico's discovery by default)."""

    v4: tuple[str, ...] = CALICO_SOCKETS_V4
    v6: tuple[str, ...] = CALICO_SOCKETS_V6

    @classmethod
    def from_overrides(cls, bird_socket: str | None = None, bird6_socket: str | None = None) -> BirdSockets:
        """An explicit path replaces Calico's candidates for its family."""
        return cls(
            v4=(bird_socket,) if bird_socket else CALICO_SOCKETS_V4,
            v6=(bird6_socket,) if bird6_socket else CALICO_SOCKETS_V6,
        )


@dataclass(frozen=True, slots=True)
class CollectionResult:
    """Everything one collection found.

    `status` holds the requested classes' sections (the others are left at their empty defaults:
    the caller merges). `errors[(family, class)]` says why a family's part of a class is missing;
    a `BirdUnavailable` there means "daemon not running" (reported as NotReady/empty, a normal
    state), anything else is a real failure (`failed` is then True)."""

    status: CalicoNodeStatusStatus
    classes: tuple[NodeStatusClass, ...]
    errors: dict[tuple[int, NodeStatusClass], BirdError]
    durations: dict[NodeStatusClass, float]  # seconds spent per class (both families)
    daemons: dict[int, DaemonStatus | None]  # per family; None when unreachable/not queried
    sockets: dict[int, str | None]  # the socket that answered per family
    protocols: dict[int, tuple[ProtocolDetails, ...]]  # BGP protocols per family, with counters
    route_tallies: dict[int, dict[str, RouteTally]]  # per family: source type → FIB/RIB counts
    routes_total: dict[int, int]  # routes BIRD listed per family
    routes_truncated: dict[int, int]  # routes left out of status by the route limit
    unknown_protocols: tuple[str, ...]  # protocol names not decodable the Calico way
    elapsed: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        """A query failed for a reason other than the daemon not running."""
        return any(not isinstance(e, BirdUnavailable) for e in self.errors.values())


class _Collector:
    def __init__(
        self,
        classes: tuple[NodeStatusClass, ...],
        route_limit: int | None,
        limit_per_type: bool,
        route_bytes: int | None,
    ) -> None:
        self.classes = classes
        self.errors: dict[tuple[int, NodeStatusClass], BirdError] = {}
        self.durations: dict[NodeStatusClass, float] = dict.fromkeys(classes, 0.0)
        self.daemons: dict[int, DaemonStatus | None] = dict.fromkeys(FAMILIES)
        self.protocols: dict[int, list[ProtocolDetails]] = {4: [], 6: []}
        self.routes = RouteAccumulator(route_limit, limit_per_type, route_bytes)
        self.notes: list[str] = []

    def fail(self, families: Iterable[int], cls: NodeStatusClass, error: BirdError) -> None:
        for family in families:
            self.errors[(family, cls)] = error

    async def query(self, client: BirdClient, families: tuple[int, ...]) -> None:
        """All requested classes on one daemon serving `families`."""
        for cls in self.classes:
            started = time.perf_counter()
            try:
                if cls is NodeStatusClass.AGENT:
                    status = await client.show_status()
                    for family in families:
                        self.daemons[family] = status
                elif cls is NodeStatusClass.BGP:
                    await self._bgp(client, families)
                else:
                    await self._routes(client, families)
            except BirdError as exc:
                self.fail(families, cls, exc)
            finally:
                self.durations[cls] += time.perf_counter() - started

    async def _bgp(self, client: BirdClient, families: tuple[int, ...]) -> None:
        for family, details in bgp_by_family(await client.show_protocols_all(), families).items():
            self.protocols[family] = details

    async def _routes(self, client: BirdClient, families: tuple[int, ...]) -> None:
        # A BIRD reconfigure interrupts `show route` with 8004; the table is then being rebuilt,
        # so start over once, and keep what was read if it happens again (upstream-gaps A8).
        for attempt in (1, 2):
            held = self.routes
            accumulator = RouteAccumulator(held.limit, held.limit_per_type, held.byte_budget)
            try:
                with _gc_paused():
                    async with contextlib.aclosing(client.route_blocks()) as blocks:
                        async for block in blocks:
                            accumulator.read(block)
                accumulator.finish()
            except BirdReconfigurationInterrupt as exc:
                # The route read last is complete too: no more next-hop lines can follow it.
                accumulator.finish()
                if attempt == 2:
                    self._merge_routes(accumulator, families)
                    self.notes.append(f"show route interrupted twice by reconfiguration: {exc}")
                    raise
                continue
            self._merge_routes(accumulator, families)
            return

    def _merge_routes(self, accumulator: RouteAccumulator, families: tuple[int, ...]) -> None:
        for family in families:
            self.routes.take_family(accumulator, family == 6)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while `show route` streams in. Every route parsed is a
    new tuple that lives until its batch is consumed, so hundreds of thousands of them trigger
    collections of every generation, full ones included: 15-20% of the parse time on BIRD 2
    (bench/collect_routes.py). Route tuples form no cycles, nothing is lost; a collector that was
    already off is left off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _connect(paths: tuple[str, ...], read_timeout: float, deadline: float) -> BirdClient:
    return await BirdClient.connect(paths, read_timeout=read_timeout, deadline=deadline)


async def gather(
    sockets: BirdSockets | None = None,
    classes: Iterable[NodeStatusClass | str] = ALL_CLASSES,
    *,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    route_limit: int | None = DEFAULT_ROUTE_LIMIT,
    route_limit_per_type: bool = False,
    route_bytes: int | None = None,
) -> CollectionResult:
    """Collect the requested classes from BIRD for both families, once per needed command.

    `route_limit` caps the routes kept per family (per family and FIB/RIB type with
    `route_limit_per_type`); all of them are still counted. `route_bytes` then reports only the
    routes whose compact JSON fits in that many bytes, FIB first (see RouteAccumulator). Never
    raises for BIRD trouble: unreachable daemons and failed queries are in `errors`, and each
    family's sections are filled independently."""
    sockets = sockets or BirdSockets()
    wanted = {NodeStatusClass(c) for c in classes}
    ordered = tuple(c for c in ALL_CLASSES if c in wanted)
    collector = _Collector(ordered, route_limit, route_limit_per_type, route_bytes)
    answered: dict[int, str | None] = dict.fromkeys(FAMILIES)
    started = time.perf_counter()

    v4_client: BirdClient | None = None
    try:
        v4_client = await _connect(sockets.v4, read_timeout, deadline)
    except BirdUnavailable as exc:
        _fail_all((4,), ordered, collector, exc)
    clients: list[tuple[BirdClient, tuple[int, ...]]] = []
    if v4_client is not None and (v4_client.major_version or 1) >= 2:
        clients.append((v4_client, (4, 6)))  # BIRD 2: one daemon for both families
    else:
        if v4_client is not None:
            clients.append((v4_client, (4,)))
        try:
            clients.append((await _connect(sockets.v6, read_timeout, deadline), (6,)))
        except BirdUnavailable as exc:
            _fail_all((6,), ordered, collector, exc)
    try:
        for client, families in clients:
            for family in families:
                answered[family] = client.path
            if ordered:
                await collector.query(client, families)
    finally:
        for client, _ in clients:
            await client.close()
    return _result(collector, ordered, answered, time.perf_counter() - started)


def _fail_all(
    families: tuple[int, ...], classes: tuple[NodeStatusClass, ...], collector: _Collector, error: BirdError
) -> None:
    for cls in classes:
        collector.fail(families, cls, error)


def _result(
    collector: _Collector,
    classes: tuple[NodeStatusClass, ...],
    answered: dict[int, str | None],
    elapsed: float,
) -> CollectionResult:
    routes = collector.routes
    status, unknown = status_sections(classes, collector.daemons, collector.protocols, routes)
    totals = {4: routes.total(False), 6: routes.total(True)}
    kept = {4: len(routes.routes_v4), 6: len(routes.routes_v6)}
    return CollectionResult(
        status=status,
        classes=classes,
        errors=collector.errors,
        durations=collector.durations,
        daemons=collector.daemons,
        sockets=answered,
        protocols={f: tuple(p) for f, p in collector.protocols.items()},
        route_tallies={4: routes.tallies(False), 6: routes.tallies(True)},
        routes_total=totals,
        routes_truncated={f: totals[f] - kept[f] for f in FAMILIES},
        unknown_protocols=unknown,
        elapsed=elapsed,
        notes=tuple(collector.notes),
    )
