"""The lab's topology as data: addressing plan, BGP peers, and the JSON state every command reads.

Addressing (mirrors the lab the BIRD transcripts were captured on): node N has `eth0` with
198.18.0.N/24 and 2001:db8::N/64 on a shared bridge; its pod block is 198.19.0.(64*(N-1))/26 and
2001:db8:1::(0x40*(N-1))/122. The optional "wrong" second interface sits on 198.18.1.0/24 and
2001:db8:0:1::/64. Extra routes for load (`lab routes`) come from EXTRA_ROUTE_RANGES_V4/V6.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LAB_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
NAMESPACE_PREFIX = "cns-"
MAX_NODES = 200
DEFAULT_AS = 64512
BGP_PORT = 179

# Every address the lab configures or dials lies inside these documentation/benchmark ranges.
LAB_RANGE_V4 = ipaddress.IPv4Network("198.18.0.0/15")
LAB_RANGE_V6 = ipaddress.IPv6Network("2001:db8::/32")
LAN_V4 = ipaddress.IPv4Network("198.18.0.0/24")
LAN_V6 = ipaddress.IPv6Network("2001:db8::/64")
SECOND_LAN_V4 = ipaddress.IPv4Network("198.18.1.0/24")
SECOND_LAN_V6 = ipaddress.IPv6Network("2001:db8:0:1::/64")
POOL_V4 = ipaddress.IPv4Network("198.19.0.0/16")
POOL_V6 = ipaddress.IPv6Network("2001:db8:1::/48")
BLOCK_PREFIX_V4 = 26
BLOCK_PREFIX_V6 = 122
# Extra routes for load tests: outside the LANs and the pod blocks of the first 2048 nodes.
# Receivers export them (like pod routes) but never program them into the kernel, so a
# 300,000-route table stays a BIRD-only cost, as in the transcripts' "big" scenario.
EXTRA_ROUTE_RANGES_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in ("198.18.16.0/20", "198.18.32.0/19", "198.18.64.0/18", "198.18.128.0/17", "198.19.128.0/17")
)
EXTRA_ROUTE_RANGES_V6 = (ipaddress.IPv6Network("2001:db8:f000::/36"),)

Family = Literal[4, 6]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LabError(Exception):
    """A lab operation failed; the message says what and how to fix it."""


class BirdVersion(enum.StrEnum):
    V1_6 = "1.6"
    V2 = "2"


class PeerType(enum.StrEnum):
    """Explicit BGPPeer kinds (the mesh is implicit); values are Calico's name prefixes."""

    NODE = "Node"
    GLOBAL = "Global"


def protocol_name(prefix: str, ip: IPAddress, port: int | None = None) -> str:
    """Calico's BGP protocol name: prefix + IP with `.`/`:` → `_` (+ `_port_<n>`)."""
    name = f"{prefix}_{str(ip).replace('.', '_').replace(':', '_')}"
    return f"{name}_port_{port}" if port is not None else name


def validate_lab_name(name: str) -> str:
    if not LAB_NAME_PATTERN.match(name):
        raise LabError(
            f"lab name {name!r}: expected 1-12 characters, lowercase letters and digits, "
            "starting with a letter (it prefixes namespace names)"
        )
    return name


def node_address(lan: ipaddress.IPv4Network | ipaddress.IPv6Network, index: int) -> IPAddress:
    return lan.network_address + index


def pod_block_v4(index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((int(POOL_V4.network_address) + 64 * (index - 1), BLOCK_PREFIX_V4))


def pod_block_v6(index: int) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((int(POOL_V6.network_address) + 0x40 * (index - 1), BLOCK_PREFIX_V6))


class Peer(BaseModel):
    """An explicit BGP peer of one node (Calico BGPPeer), possibly pointing nowhere."""

    model_config = ConfigDict(frozen=True)

    type: PeerType
    ip: Annotated[IPAddress, Field(union_mode="left_to_right")]
    as_number: int = DEFAULT_AS
    port: int | None = None

    @property
    def family(self) -> Family:
        return 4 if self.ip.version == 4 else 6

    @property
    def protocol(self) -> str:
        return protocol_name(self.type.value, self.ip, self.port)

    @field_validator("ip")
    @classmethod
    def _inside_lab_ranges(cls, ip: IPAddress) -> IPAddress:
        if ip not in (LAB_RANGE_V4 if ip.version == 4 else LAB_RANGE_V6):
            raise ValueError(f"expected an address inside {LAB_RANGE_V4} or {LAB_RANGE_V6}, got {ip}")
        return ip


class NodeState(BaseModel):
    """One lab node. `ipv4`/`ipv6` are the node's BGP addresses (what Calico would autodetect)."""

    index: int
    name: str
    namespace: str
    directory: Path
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address | None
    as_number: int = DEFAULT_AS
    peers: list[Peer] = Field(default_factory=list)
    extra_routes_v4: int = 0
    extra_routes_v6: int = 0
    second_interface: bool = False
    blocked_peers: list[Annotated[IPAddress, Field(union_mode="left_to_right")]] = Field(default_factory=list)

    @property
    def eth0_ipv4(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(node_address(LAN_V4, self.index))

    @property
    def eth0_ipv6(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(node_address(LAN_V6, self.index))

    @property
    def eth1_ipv4(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(node_address(SECOND_LAN_V4, self.index))

    @property
    def eth1_ipv6(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(node_address(SECOND_LAN_V6, self.index))

    @property
    def block_v4(self) -> ipaddress.IPv4Network:
        return pod_block_v4(self.index)

    @property
    def block_v6(self) -> ipaddress.IPv6Network:
        return pod_block_v6(self.index)

    @property
    def router_id(self) -> ipaddress.IPv4Address:
        return self.ipv4


class LabState(BaseModel):
    """Everything a later command needs to act on a lab; stored as lab.json in the lab directory."""

    name: str
    bird: BirdVersion
    ipv6: bool
    calico_timers: bool
    directory: Path
    bridge_namespace: str
    nodes: list[NodeState]
    # The Python process that owns a test/benchmark lab; a lab whose owner is gone is stale.
    owner_pid: int | None = None
