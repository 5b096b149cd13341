"""BIRD configuration for a lab node, modelled on calico-node's confd templates (pure: text only).

BIRD 1.6 gets one file per daemon (`bird` for IPv4, `bird6` for IPv6), BIRD 2 one file with ipv4
and ipv6 channels, as in the transcripts' configs. Differences from calico-node, on purpose:
logging goes to a file in the node directory, extra-route ranges (`lab routes`) are exported and
kept out of the kernel, and unless `calico_timers` is set the BGP timers are shortened so sessions
establish and fail within seconds in tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico_nodestatus.lab.model import (
    DEFAULT_AS,
    EXTRA_ROUTE_RANGES_V4,
    EXTRA_ROUTE_RANGES_V6,
    POOL_V4,
    POOL_V6,
    Family,
    IPAddress,
    LabError,
    LabState,
    NodeState,
    protocol_name,
)

CALICO_TIMERS = ("connect delay time 2;", "connect retry time 5;", "error wait time 5,30;")
LAB_TIMERS = (
    "connect delay time 1;",
    "connect retry time 2;",
    "error wait time 1,10;",
    "hold time 9;",
    "keepalive time 3;",
)


@dataclass(frozen=True, slots=True)
class BgpSession:
    """One `protocol bgp` block: name, neighbour and how this node talks to it."""

    name: str
    neighbor: IPAddress
    as_number: int
    source: IPAddress
    port: int | None = None
    passive: bool = False

    @property
    def family(self) -> Family:
        return 4 if self.neighbor.version == 4 else 6


def extra_routes_file(directory: Path, family: Family) -> Path:
    return directory / f"extra_routes{family}.conf"


def log_file(directory: Path, daemon: str) -> Path:
    return directory / f"{daemon}.log"


def bgp_sessions(state: LabState, node: NodeState, family: Family) -> list[BgpSession]:
    """Mesh sessions to every other node, then the node's explicit peers, for one family.

    Calico makes the mesh one-directional: a node is passive toward every peer whose IP *string*
    sorts after its own. Mesh peers are expected to use the lab's AS even if a node was switched
    to another one (that is the wrong-AS fault).
    """
    local = node.ipv4 if family == 4 else node.ipv6
    if local is None:
        return []
    sessions = []
    for other in state.nodes:
        remote = other.ipv4 if family == 4 else other.ipv6
        if other.index == node.index or remote is None:
            continue
        sessions.append(
            BgpSession(
                name=protocol_name("Mesh", remote),
                neighbor=remote,
                as_number=DEFAULT_AS,
                source=local,
                passive=str(remote) > str(local),
            )
        )
    sessions.extend(
        BgpSession(
            name=peer.protocol, neighbor=peer.ip, as_number=peer.as_number, source=local, port=peer.port
        )
        for peer in node.peers
        if peer.family == family
    )
    return sessions


def _filters(node: NodeState, family: Family, suffix: str) -> list[str]:
    block = node.block_v4 if family == 4 else node.block_v6
    pool = POOL_V4 if family == 4 else POOL_V6
    extra = EXTRA_ROUTE_RANGES_V4 if family == 4 else EXTRA_ROUTE_RANGES_V6
    return [
        f"filter calico_export_to_bgp_peers{suffix} {{",
        f"  if ( net = {block} ) then {{ accept; }}",
        f"  if ( net ~ {block} ) then {{ reject; }}",
        f"  if ( net ~ {pool} ) then {{ accept; }}",
        *(f"  if ( net ~ {r} ) then {{ accept; }}" for r in extra),
        "  reject;",
        "}",
        "",
        f"filter calico_kernel_programming{suffix} {{",
        *(f"  if ( net ~ {r} ) then {{ reject; }}" for r in extra),
        "  accept;",
        "}",
        "",
    ]


def _block(header: str, body: Iterable[str]) -> list[str]:
    return [f"{header} {{", *(f"  {line}" for line in body), "}", ""]


def _kernel(channel: Sequence[str]) -> list[str]:
    return _block(
        "protocol kernel",
        [
            *channel,
            "learn;             # Learn all alien routes from the kernel",
            "persist;           # Don't remove routes on bird shutdown",
            "scan time 2;       # Scan kernel routing table every 2 seconds",
            "graceful restart;",
            "merge paths on;    # Allow export multipath routes (ECMP)",
        ],
    )


def _template(name: str, channel: Sequence[str], calico_timers: bool, as_number: int) -> list[str]:
    return _block(
        f"template bgp {name}",
        [
            "debug { states };",
            'description "Connection to BGP peer";',
            f"local as {as_number};",
            "multihop;",
            "graceful restart;",
            *(CALICO_TIMERS if calico_timers else LAB_TIMERS),
            *channel,
        ],
    )


def _sessions(sessions: Sequence[BgpSession], template: str) -> list[str]:
    lines: list[str] = []
    for session in sessions:
        port = f" port {session.port}" if session.port is not None else ""
        body = [
            f"neighbor {session.neighbor}{port} as {session.as_number};",
            f"source address {session.source};  # The local address we use for the TCP connection",
        ]
        if session.passive:
            body.append("passive on; # Mesh is unidirectional, peer will connect to us.")
        lines += _block(f"protocol bgp {session.name} from {template}", body)
    return lines


def _header(node: NodeState, daemon: str, description: str) -> list[str]:
    return [
        f"# Calico-like {description} for {node.name}",
        f'log "{log_file(node.directory, daemon)}" all;',
        f"router id {node.router_id};",
        "",
    ]


_DEVICE = _block(
    "protocol device", ["debug { states };", "scan time 2;    # Scan interfaces every 2 seconds"]
)


def render_bird16(state: LabState, node: NodeState, family: Family) -> str:
    """bird.conf (family 4) or bird6.conf (family 6) for BIRD 1.6."""
    daemon = "bird" if family == 4 else "bird6"
    block = node.block_v4 if family == 4 else node.block_v6
    bgp_channel = [
        "gateway recursive; # This should be the default, but just in case.",
        "import all;",
        "export filter calico_export_to_bgp_peers;",
        "add paths on;",
    ]
    lines = [
        *_header(node, daemon, f"BIRD 1.6 config ({daemon})"),
        *_filters(node, family, ""),
        *_kernel(["import all;", "export filter calico_kernel_programming;"]),
        *_DEVICE,
        *_block("protocol direct", ["debug { states };", 'interface "-dummy*", "*";']),
        *_block("protocol static", ["# IP blocks for this host.", f"route {block} blackhole;"]),
        f'include "{extra_routes_file(node.directory, family)}";',
        "",
        *_template("bgp_template", bgp_channel, state.calico_timers, node.as_number),
        *_sessions(bgp_sessions(state, node, family), "bgp_template"),
    ]
    return "\n".join(lines)


def render_bird2(state: LabState, node: NodeState) -> str:
    """The single bird.conf for BIRD 2 (ipv4 channels, plus ipv6 ones when the lab has IPv6)."""
    families: list[Family] = [4, 6] if state.ipv6 else [4]
    lines = _header(node, "bird", "BIRD 2 config (one daemon, ipv4 + ipv6 channels)")
    for family in families:
        lines += _filters(node, family, f"_v{family}")
    for family in families:
        lines += _kernel(
            [f"ipv{family} {{ import all; export filter calico_kernel_programming_v{family}; }};"]
        )
    lines += _DEVICE
    lines += _block(
        "protocol direct",
        ["debug { states };", *(f"ipv{f};" for f in families), 'interface "-dummy*", "*";'],
    )
    for family in families:
        block = node.block_v4 if family == 4 else node.block_v6
        lines += _block(
            "protocol static", [f"ipv{family};", "# IP blocks for this host.", f"route {block} blackhole;"]
        )
        lines += [f'include "{extra_routes_file(node.directory, family)}";', ""]
    for family in families:
        template = "bgp_template" if family == 4 else "bgp_template_v6"
        channel = [
            f"ipv{family} {{",
            "  gateway recursive;",
            "  import all;",
            f"  export filter calico_export_to_bgp_peers_v{family};",
            "  add paths on;",
            "};",
        ]
        lines += _template(template, channel, state.calico_timers, node.as_number)
        lines += _sessions(bgp_sessions(state, node, family), template)
    return "\n".join(lines)


def extra_routes_networks(family: Family, count: int) -> list[str]:
    """`count` distinct prefixes from the extra-route ranges: /32 (/126) first, then shorter ones.

    IPv4 space is small (the lab stays inside 198.18.0.0/15), so beyond the /32s it continues with
    /31s, /30s... of the same ranges; `max_extra_routes` is the ceiling.
    """
    ranges = EXTRA_ROUTE_RANGES_V4 if family == 4 else EXTRA_ROUTE_RANGES_V6
    host_len = 32 if family == 4 else 126
    networks: list[str] = []
    prefix_len = host_len
    while len(networks) < count and prefix_len >= min(r.prefixlen for r in ranges):
        for r in ranges:
            if r.prefixlen > prefix_len:
                continue
            base = int(r.network_address)
            step = 1 << (r.max_prefixlen - prefix_len)
            take = min(r.num_addresses // step, count - len(networks))
            if family == 4:
                networks.extend(f"{ipaddress.IPv4Address(base + i * step)}/{prefix_len}" for i in range(take))
            else:
                # ipaddress' IPv6 compression costs ~3 µs per address; the range ends in "::" and
                # offsets stay below 2**32, so the low two groups are appended directly (BIRD
                # accepts "2001:db8:f000::0:4").
                head = str(r.network_address)
                networks.extend(
                    f"{head}{(i * step) >> 16:x}:{(i * step) & 0xFFFF:x}/{prefix_len}" for i in range(take)
                )
            if len(networks) == count:
                return networks
        prefix_len -= 1
    if len(networks) < count:
        raise LabError(f"count: at most {len(networks)} IPv{family} extra routes fit the lab's ranges")
    return networks


def render_extra_routes(bird: str, family: Family, count: int) -> str:
    """A static protocol originating `count` blackhole routes (empty text for 0)."""
    if count == 0:
        return "# no extra routes\n"
    name = "lab_routes" if bird == "1.6" else f"lab_routes{family}"
    channel = "" if bird == "1.6" else f"  ipv{family};\n"
    routes = "".join(f"  route {n} blackhole;\n" for n in extra_routes_networks(family, count))
    return f"protocol static {name} {{\n{channel}{routes}}}\n"
