"""Parsed BIRD records → CalicoNodeStatus status sections. Pure: no I/O, no clocks.

Follows Calico's reporter, minus its bugs; every deliberate difference is listed with its reason in
docs/collection-rules.md. The FIB/RIB rule, the route-source rule and the BGP-state rule each live
in exactly one function here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from calico_nodestatus.api import (
    BGPDaemonState,
    BGPDaemonStatus,
    BGPPeerType,
    BGPSessionState,
    CalicoNodeAgentStatus,
    CalicoNodeBGPRouteStatus,
    CalicoNodeBGPStatus,
    CalicoNodePeer,
    CalicoNodeRoute,
    CalicoNodeRouteLearnedFrom,
    CalicoNodeRouteSourceType,
    CalicoNodeRouteType,
    CalicoNodeStatusStatus,
    NodeStatusClass,
)
from calico_nodestatus.bird.names import PeerKind, decode_peer_name
from calico_nodestatus.bird.parse import RouteParser, block_lines, count_route_block
from calico_nodestatus.bird.types import DaemonStatus, ProtocolDetails, Route, RouteKind

# At most this many routes per family go into status: upstream writes every route, which on
# large nodes exceeds etcd's request limit and makes every write fail (upstream-gaps A5).
DEFAULT_ROUTE_LIMIT = 2000
# Bytes of the smallest route the compact JSON encoding can hold, separating comma included:
# `{"type":"FIB","destination":"::/0","gateway":"N/A","learnedFrom":{}},` (BIRD prints no
# shorter destination, and every route has a type and a gateway or "N/A").
MIN_ROUTE_WIRE_BYTES = 69


def route_limit_for_budget(budget_bytes: int) -> int:
    """The most routes an object of `budget_bytes` could ever hold, as a `route_limit` for
    `gather(..., route_limit_per_type=True)`: then no route that could fit is dropped before the
    caller's size budget sees it, and memory is bounded by the budget, not by BIRD's table."""
    return max(0, budget_bytes) // MIN_ROUTE_WIRE_BYTES


OTHER_SOURCE = "Other"  # metrics label for routes whose protocol maps to no API source type

_PEER_TYPES = {
    PeerKind.MESH: BGPPeerType.NODE_MESH,
    PeerKind.NODE: BGPPeerType.NODE_PEER,
    PeerKind.GLOBAL: BGPPeerType.GLOBAL_PEER,
}
# BIRD prints two states the API enum lacks: `Down` (protocol disabled/stopped: the BGP FSM is
# idle) and `Passive` (waiting for the peer to connect: the FSM's Active state).
_SESSION_STATES = {s.value: s for s in BGPSessionState} | {
    "Down": BGPSessionState.IDLE,
    "Passive": BGPSessionState.ACTIVE,
}


# Longer than any text BIRD prints for a field the API carries (addresses, interface names,
# times, versions); anything longer is not BIRD output worth storing.
MAX_TEXT_CHARS = 253


def clean_text(text: str | None) -> str | None:
    """BIRD text as it may be stored: non-printable characters (controls, escapes) removed and
    the length capped at MAX_TEXT_CHARS, so a garbled reply cannot inject terminal escapes into
    `get` output or bloat the object."""
    if text is None or (len(text) <= MAX_TEXT_CHARS and text.isprintable()):
        return text
    return "".join(ch for ch in text[: MAX_TEXT_CHARS * 4] if ch.isprintable())[:MAX_TEXT_CHARS]


def daemon_status(status: DaemonStatus | None) -> BGPDaemonStatus:
    """`Ready` only when BIRD answered and is running normally (not reconfiguring, shutting down
    or in graceful-restart recovery); what BIRD reported is kept either way. None = unreachable."""
    if status is None:
        return BGPDaemonStatus(state=BGPDaemonState.NOT_READY)
    return BGPDaemonStatus(
        state=BGPDaemonState.READY if status.is_up else BGPDaemonState.NOT_READY,
        version=clean_text(status.version),
        router_id=clean_text(status.router_id),
        last_boot_time=clean_text(status.last_reboot),
        last_reconfiguration_time=clean_text(status.last_reconfiguration),
    )


def session_state(bgp_state: str | None) -> BGPSessionState | None:
    """BIRD's BGP state word → API session state (None when BIRD printed nothing we know)."""
    return _SESSION_STATES.get(bgp_state) if bgp_state else None


def is_bgp_peer(details: ProtocolDetails) -> bool:
    return details.protocol.proto == "BGP"


def peer_ip(details: ProtocolDetails) -> str | None:
    """The neighbour address BIRD reports (zone suffix `%iface` dropped: the API wants an IP),
    else the address decoded from the protocol name."""
    if details.neighbor_address:
        return details.neighbor_address.split("%", 1)[0]
    decoded = decode_peer_name(details.protocol.name)
    return decoded.ip if decoded else None


def is_ipv6_peer(details: ProtocolDetails) -> bool:
    """Family of a BGP session (BIRD 2 serves both families on one socket)."""
    address = peer_ip(details)
    if address is not None:
        return ":" in address
    return any(c.name == "ipv6" for c in details.channels)


@dataclass(frozen=True, slots=True)
class PeerSection:
    peers: list[CalicoNodePeer]
    established: int
    not_established: int
    unknown_names: tuple[str, ...]  # BGP protocols not named the Calico way (still reported)


def bgp_status(v4: PeerSection, v6: PeerSection) -> CalicoNodeBGPStatus:
    """The BGP section from each family's peers and counts."""
    return CalicoNodeBGPStatus(
        number_established_v4=v4.established,
        number_not_established_v4=v4.not_established,
        number_established_v6=v6.established,
        number_not_established_v6=v6.not_established,
        peers_v4=v4.peers,
        peers_v6=v6.peers,
    )


def peer_section(protocols: Iterable[ProtocolDetails]) -> PeerSection:
    """One family's peers, in BIRD's order. Every BGP protocol is a peer (including ones named
    `Local_Workload_…` or by hand); Established is counted from the BGP state, not the protocol
    state column, so peers BIRD shows as `wait`/`feed` with an Established session count as up."""
    peers: list[CalicoNodePeer] = []
    established = 0
    unknown: list[str] = []
    for details in protocols:
        if not is_bgp_peer(details):
            continue
        decoded = decode_peer_name(details.protocol.name)
        if decoded is None:
            unknown.append(details.protocol.name)
        # `BGP state:` first; the `show protocols` row's info column when that line is missing
        # or holds a word we do not know.
        state = session_state(details.bgp_state) or session_state(details.protocol.bgp_state)
        if state is BGPSessionState.ESTABLISHED:
            established += 1
        peers.append(
            CalicoNodePeer(
                peer_ip=clean_text(peer_ip(details)),
                type=_PEER_TYPES.get(decoded.kind) if decoded else None,
                state=state,
                since=clean_text(details.protocol.since),
            )
        )
    return PeerSection(peers, established, len(peers) - established, tuple(unknown))


def route_type(route: Route) -> CalicoNodeRouteType:
    """The FIB/RIB rule: FIB = BIRD's selected route for its prefix that it did not fail to
    install (`*`); RIB = every other route, including a primary marked `!` (kernel sync error)."""
    return CalicoNodeRouteType.FIB if route.primary and not route.sync_error else CalicoNodeRouteType.RIB


@lru_cache(maxsize=4096)
def route_source(protocol: str) -> CalicoNodeRouteLearnedFrom:
    """Where a route came from, from the BIRD protocol that holds it. Names with a port decode to
    the real peer IP; unknown protocols give an empty learnedFrom instead of failing the cycle."""
    for prefix, source in (
        ("kernel", CalicoNodeRouteSourceType.KERNEL),
        ("static", CalicoNodeRouteSourceType.STATIC),
        ("direct", CalicoNodeRouteSourceType.DIRECT),
    ):
        if protocol.startswith(prefix):
            return CalicoNodeRouteLearnedFrom(source_type=source)
    decoded = decode_peer_name(protocol)
    if decoded is None:
        return CalicoNodeRouteLearnedFrom()
    source = (
        CalicoNodeRouteSourceType.NODE_MESH
        if decoded.kind is PeerKind.MESH
        else CalicoNodeRouteSourceType.BGP_PEER
    )
    return CalicoNodeRouteLearnedFrom(source_type=source, peer_ip=decoded.ip)


_NO_GATEWAY_INTERFACE = {
    RouteKind.BLACKHOLE: "blackhole",
    RouteKind.UNREACHABLE: "unreachable",
    RouteKind.PROHIBITED: "prohibited",
}


def api_route(route: Route) -> CalicoNodeRoute:
    """One CalicoNodeRoute; an ECMP route is reported with its first next hop."""
    return CalicoNodeRoute(
        type=route_type(route),
        destination=clean_text(route.prefix),
        gateway=clean_text(route.gateway) if route.kind is RouteKind.VIA else "N/A",
        interface=_NO_GATEWAY_INTERFACE.get(route.kind) or clean_text(route.interface),
        learned_from=route_source(route.protocol),
    )


@dataclass(slots=True)
class RouteTally:
    """Route counts of one family for one source type (metrics)."""

    fib: int = 0
    rib: int = 0


# Compact-JSON bytes of a route's fixed parts: braces, the type member and the learnedFrom key.
_ROUTE_FRAME_BYTES = len('{"type":"FIB","learnedFrom":}')
_KEY_BYTES = {key: len(f',"{key}":') for key in ("destination", "gateway", "interface")}
_VIA_KEYS_BYTES = sum(_KEY_BYTES.values()) + 3 * 2  # a via route's three keys and their quotes


def _text_bytes(text: str | None) -> int:
    """Bytes of a string member's value in compact JSON (ensure_ascii off), quotes included."""
    if text is None or not text:
        return 0
    if text.isascii() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(json.dumps(text, ensure_ascii=False).encode())


@lru_cache(maxsize=4096)
def _learned_from_bytes(protocol: str) -> int:
    return len(json.dumps(route_source(protocol).to_wire(), separators=(",", ":")).encode())


def route_wire_bytes(route: Route) -> int:
    """Bytes `api_route(route)` takes in an object's compact JSON, separating comma included,
    worked out from the string lengths: JSON-encoding each route to size it cost more than
    parsing the whole table (bench/collect_routes.py). Exact: tests check it against the encoder."""
    size = _ROUTE_FRAME_BYTES + 1 + _learned_from_bytes(route.protocol)
    prefix, gateway, interface = route.prefix, route.gateway, route.interface
    if route.kind is RouteKind.VIA and prefix and gateway and interface:
        # The usual route, checked at once: printable ASCII without quotes or backslashes, none
        # over the length cap, is stored as it is, so it costs its length plus quotes.
        joined = prefix + gateway + interface
        if (
            joined.isascii()
            and joined.isprintable()
            and '"' not in joined
            and "\\" not in joined
            and max(len(prefix), len(gateway), len(interface)) <= MAX_TEXT_CHARS
        ):
            return size + _VIA_KEYS_BYTES + len(joined)
    for key, text in (
        ("destination", clean_text(route.prefix)),
        ("gateway", clean_text(route.gateway) if route.kind is RouteKind.VIA else "N/A"),
        ("interface", _NO_GATEWAY_INTERFACE.get(route.kind) or clean_text(route.interface)),
    ):
        if text:
            size += _KEY_BYTES[key] + _text_bytes(text)
    return size


# Route fields that decide how a route is counted: (protocol, primary, sync_error), read in C.
_COUNT_KEY = itemgetter(4, 5, 6)
_TABLE = itemgetter(7)


def _is_fib(route: Route) -> bool:
    return route.primary and not route.sync_error


def select_within_budget(families: Sequence[Sequence[tuple[bool, int]]], budget: int) -> list[list[bool]]:
    """The one rule for which routes fit a byte budget. `families` holds, per family, each route's
    (is FIB, wire bytes) in BIRD's order; returns per family which routes to keep.

    FIB routes before RIB routes. Within a type the families share the room max-min fairly: the
    one needing less goes first and takes at most an even share, so a flood of IPv4 routes cannot
    push out a handful of IPv6 ones (nor the other way round). A route too big for what is left is
    skipped and smaller ones after it may still fit."""
    keep = [[False] * len(routes) for routes in families]
    remaining = budget
    for want_fib in (True, False):
        wanted = [
            [(index, cost) for index, (fib, cost) in enumerate(routes) if fib is want_fib]
            for routes in families
        ]
        order = sorted(range(len(families)), key=lambda family: sum(cost for _, cost in wanted[family]))
        for position, family in enumerate(order):
            allowance = remaining // (len(order) - position)
            for index, cost in wanted[family]:
                if cost <= allowance:
                    keep[family][index] = True
                    allowance -= cost
                    remaining -= cost
    return keep


class RouteAccumulator:
    """Consumes route batches as they stream in: keeps up to `limit` routes per family and
    FIB/RIB type (FIB are never crowded out by RIB), and counts every route by protocol. This is
    the hot path, so counting stays in C (Counter.update over itemgetter), held routes stay the
    parser's tuples, and API objects are only built for the routes that go into status.

    Which held routes are reported: with `byte_budget`, those whose compact JSON fits in that
    many bytes by `select_within_budget` (the agent's size budget);
    else with `limit_per_type` every held route; otherwise at most `limit` per family, FIB
    first. Always in BIRD's order. `limit=None` keeps everything.

    `read()` takes the reply itself, block by block: once a family has no room left for the
    routes of a block, the block is only counted on its bytes (`count_route_block`), so a big
    table costs about what reading it costs, and every route is still counted exactly."""

    __slots__ = (
        "_counts", "_families", "_held", "_parser", "_reported", "_room", "byte_budget", "limit",
        "limit_per_type",
    )  # fmt: skip

    def __init__(
        self,
        limit: int | None = DEFAULT_ROUTE_LIMIT,
        limit_per_type: bool = False,
        byte_budget: int | None = None,
    ) -> None:
        self.limit = limit
        self.limit_per_type = limit_per_type
        self.byte_budget = byte_budget
        # Per family (index: ipv6): routes held in BIRD's order, and the room left per type
        # (index: FIB?); None = unlimited.
        self._held: tuple[list[Route], list[Route]] = ([], [])
        self._room: list[list[int] | None] = [None if limit is None else [limit, limit] for _ in range(2)]
        self._counts: tuple[Counter[tuple[str, bool, bool]], Counter[tuple[str, bool, bool]]] = (
            Counter(),
            Counter(),
        )
        self._reported: tuple[list[CalicoNodeRoute], list[CalicoNodeRoute]] | None = None
        self._parser = RouteParser()
        self._families: dict[str | None, bool] = {}  # table → ipv6?, from the routes seen in it

    def read(self, block: bytes) -> None:
        """One block of a `show route` reply (`BirdClient.route_blocks`); `finish()` at its end."""
        parser = self._parser
        ipv6 = self._families.get(parser.table)
        room = None if ipv6 is None else self._room[ipv6]
        counting = room is not None and not (room[0] and room[1]) and parser.in_routes
        if counting or parser.hops_counted:
            routes, block = parser.complete_from(block)
            self.add(routes)
        if counting:
            assert room is not None and ipv6 is not None
            counted = count_route_block(block)
            if counted is not None and not (
                (room[1] and counted.primary) or (room[0] and (counted.sync_error or counted.other))
            ):
                counts = self._counts[ipv6]
                for key, n in (
                    ((counted.protocol, True, False), counted.primary),
                    ((counted.protocol, True, True), counted.sync_error),
                    ((counted.protocol, False, False), counted.other),
                ):
                    if n:
                        counts[key] += n
                parser.skipped(block)
                self._reported = None
                return
        self.add(parser.feed(block_lines(block)))

    def finish(self) -> None:
        """The end of the reply: the route still waiting for next-hop lines is complete."""
        self.add(self._parser.finish())

    def add(self, batch: Sequence[Route]) -> None:
        if not batch:
            return
        self._reported = None
        # A table holds one address family (BIRD 2 tables are typed; a BIRD 1.6 daemon serves
        # one family), so the family is read once per table, not per route.
        tables = set(map(_TABLE, batch))
        if len(tables) == 1:
            ipv6 = self._families[batch[0].table] = ":" in batch[0].prefix
            self._add_family(ipv6, batch)
            return
        for table in tables:
            routes = [r for r in batch if r.table == table]
            ipv6 = self._families[table] = ":" in routes[0].prefix
            self._add_family(ipv6, routes)

    def _add_family(self, ipv6: bool, routes: Sequence[Route]) -> None:
        self._counts[ipv6].update(map(_COUNT_KEY, routes))
        held = self._held[ipv6]
        room = self._room[ipv6]
        if room is None:
            held.extend(routes)
            return
        if not (room[0] or room[1]):
            return  # count only: the common case on big tables
        for route in routes:
            fib = _is_fib(route)
            if room[fib]:
                room[fib] -= 1
                held.append(route)
                if not (room[0] or room[1]):
                    return

    def take_family(self, other: RouteAccumulator, ipv6: bool) -> None:
        """Replaces one family's routes and counts with `other`'s."""
        self._reported = None
        self._held[ipv6][:] = other._held[ipv6]
        self._counts[ipv6].clear()
        self._counts[ipv6].update(other._counts[ipv6])

    def routes(self, ipv6: bool) -> list[CalicoNodeRoute]:
        """The family's routes for status, in BIRD's order."""
        if self._reported is None:
            self._reported = (
                (self._report(False), self._report(True))
                if self.byte_budget is None
                else self._within_budget(self.byte_budget)
            )
        return self._reported[ipv6]

    def _report(self, ipv6: bool) -> list[CalicoNodeRoute]:
        held = self._held[ipv6]
        limit = self.limit
        if limit is None or self.limit_per_type or len(held) <= limit:
            return list(map(api_route, held))
        # FIB first: as many as fit (all held ones do), then RIB routes in the room left.
        rib_room = limit - sum(map(_is_fib, held))
        kept = []
        for route in held:
            if _is_fib(route):
                kept.append(route)
            elif rib_room > 0:
                kept.append(route)
                rib_room -= 1
        return list(map(api_route, kept))

    def _within_budget(self, budget: int) -> tuple[list[CalicoNodeRoute], list[CalicoNodeRoute]]:
        keep = select_within_budget(
            [[(_is_fib(route), route_wire_bytes(route)) for route in held] for held in self._held], budget
        )
        v4, v6 = (
            [api_route(route) for route, kept in zip(held, flags, strict=True) if kept]
            for held, flags in zip(self._held, keep, strict=True)
        )
        return v4, v6

    @property
    def routes_v4(self) -> list[CalicoNodeRoute]:
        return self.routes(False)

    @property
    def routes_v6(self) -> list[CalicoNodeRoute]:
        return self.routes(True)

    def total(self, ipv6: bool) -> int:
        return self._counts[ipv6].total()

    def tallies(self, ipv6: bool) -> dict[str, RouteTally]:
        """Counts by API source type (or `Other`) for one family."""
        result: dict[str, RouteTally] = {}
        for (protocol, primary, sync_error), n in self._counts[ipv6].items():
            source = route_source(protocol).source_type
            tally = result.setdefault(str(source) if source else OTHER_SOURCE, RouteTally())
            if primary and not sync_error:
                tally.fib += n
            else:
                tally.rib += n
        return result

    def unknown_protocols(self) -> tuple[str, ...]:
        protocols = {key[0] for counts in self._counts for key in counts}
        return tuple(sorted(p for p in protocols if route_source(p).source_type is None))


def bgp_by_family(
    details: Iterable[ProtocolDetails], families: tuple[int, ...]
) -> dict[int, list[ProtocolDetails]]:
    """The BGP protocols of one daemon, per family: a BIRD 1.6 daemon serves one family, a BIRD 2
    daemon both (each session then goes by its neighbour's address family)."""
    result: dict[int, list[ProtocolDetails]] = {family: [] for family in families}
    for item in details:
        if not is_bgp_peer(item):
            continue
        family = families[0] if len(families) == 1 else (6 if is_ipv6_peer(item) else 4)
        result.setdefault(family, []).append(item)
    return result


def status_sections(
    classes: Iterable[NodeStatusClass],
    daemons: dict[int, DaemonStatus | None],
    protocols: dict[int, Sequence[ProtocolDetails]],
    routes: RouteAccumulator,
) -> tuple[CalicoNodeStatusStatus, tuple[str, ...]]:
    """The status for the requested classes (others stay empty: the caller merges), and the
    protocol names that could not be decoded. Each family is filled on its own."""
    sections: dict[str, object] = {}
    unknown: set[str] = set()
    wanted = set(classes)
    if NodeStatusClass.AGENT in wanted:
        sections["agent"] = CalicoNodeAgentStatus(
            bird_v4=daemon_status(daemons.get(4)), bird_v6=daemon_status(daemons.get(6))
        )
    if NodeStatusClass.BGP in wanted:
        v4 = peer_section(protocols.get(4, ()))
        v6 = peer_section(protocols.get(6, ()))
        unknown.update(v4.unknown_names, v6.unknown_names)
        sections["bgp"] = bgp_status(v4, v6)
    if NodeStatusClass.ROUTES in wanted:
        sections["routes"] = CalicoNodeBGPRouteStatus(routes_v4=routes.routes_v4, routes_v6=routes.routes_v6)
        unknown.update(routes.unknown_protocols())
    return CalicoNodeStatusStatus.model_validate(sections), tuple(sorted(unknown))
