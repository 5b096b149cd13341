"""Fuzzing with an oracle: generated route tables, protocol tables and status replies rendered in
BIRD 1.6's and BIRD 2's exact formats (tests/bird/render.py), parsed back: the same values. Routes
include ECMP, blackhole/unreachable/prohibited, `] !`, port-suffixed and `Local_Workload_` peer
names and IPv6, and are also checked against the API mapping docs/collection-rules.md states.
Framing: the same replies cut into chunks at arbitrary bytes (inside lines, inside reply codes)
give the same lines and the same routes.

Each oracle is shown to catch a deliberately broken parser, renderer or framer
(`test_*_catches_*`): the property must fail against it."""

from __future__ import annotations

import ipaddress
import itertools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from calico_nodestatus.api import CalicoNodeRoute, CalicoNodeRouteLearnedFrom
from calico_nodestatus.bird import parse
from calico_nodestatus.bird.client import _Framer
from calico_nodestatus.bird.types import (
    ChannelInfo,
    DaemonStatus,
    GracefulRestartStatus,
    NextHop,
    Protocol,
    ProtocolDetails,
    Route,
    RouteKind,
    RouteStats,
)
from calico_nodestatus.collect.sections import api_route
from tests.bird import render
from tests.plugins.hypothesis_profiles import examples

pytestmark = pytest.mark.fuzz
VERSIONS = st.sampled_from(["1.6", "2"])
# A broken subject must be caught quickly: no shrinking, the CI budget.
CATCH = settings(phases=[Phase.generate], max_examples=100)

# -- values --------------------------------------------------------------------------------------

V4 = int(ipaddress.IPv4Address("198.18.0.0"))
V6 = int(ipaddress.IPv6Address("2001:db8::"))


def addresses(ipv6: bool) -> st.SearchStrategy[str]:
    if ipv6:
        return st.integers(0, 2**96 - 1).map(lambda n: str(ipaddress.IPv6Address(V6 + n)))
    return st.integers(0, 2**17 - 1).map(lambda n: str(ipaddress.IPv4Address(V4 + n)))


def prefixes(ipv6: bool) -> st.SearchStrategy[str]:
    bits = 128 if ipv6 else 32
    return st.tuples(addresses(ipv6), st.integers(32 if ipv6 else 15, bits)).map(
        lambda a: str(ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False))
    )


def words(first: str, rest: str, max_size: int) -> st.SearchStrategy[str]:
    """A word: one of `first`, then up to `max_size - 1` of `rest` (cheaper than from_regex)."""
    return st.tuples(st.sampled_from(first), st.text(rest, max_size=max_size - 1)).map("".join)


WORD = words(string.ascii_letters, string.ascii_letters + string.digits + "_.-", 15)
INTERFACES = st.one_of(
    st.just("eth0"), st.text("0123456789abcdef", min_size=11, max_size=11).map("cali".__add__), WORD
)


def clock(version: str) -> st.SearchStrategy[str]:
    hms = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
    if version == "1.6":
        return hms.map(lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d}")
    return st.tuples(hms, st.integers(0, 999)).map(
        lambda t: f"{t[0][0]:02d}:{t[0][1]:02d}:{t[0][2]:02d}.{t[1]:03d}"
    )


def moments(version: str) -> st.SearchStrategy[str]:
    date = st.tuples(st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28)).map(
        lambda d: f"{d[0]}-{d[1]:02d}-{d[2]:02d}"
    )
    return st.tuples(date, clock(version)).map(" ".join)


def since(version: str) -> st.SearchStrategy[str]:
    """BIRD's `since` column: a time of day for recent changes, a date for old ones."""
    return st.one_of(clock(version), moments(version).map(lambda m: m.split()[0]))


# -- routes: what a route's protocol name means, and the route ----------------------------------


@dataclass(frozen=True)
class Source:
    """A route's protocol, by intent: the name BIRD shows and the learnedFrom the docs promise."""

    name: str
    learned_from: CalicoNodeRouteLearnedFrom


def _encoded(ip: str) -> str:
    return ip.replace(".", "_").replace(":", "_")


@st.composite
def sources(draw: st.DrawFn, ipv6: bool) -> Source:
    kind = draw(
        st.sampled_from(["Kernel", "Static", "Direct", "Mesh", "Node", "Global", "Local_Workload", "custom"])
    )
    if kind in ("Kernel", "Static", "Direct"):
        name = f"{kind.lower()}{draw(st.integers(1, 9))}"
        return Source(name, CalicoNodeRouteLearnedFrom(source_type=kind))
    if kind == "custom":  # a hand-written protocol: no source type, and never a failed cycle (A6)
        name = draw(words("efghij", string.ascii_lowercase + string.digits, 11))
        return Source(name, CalicoNodeRouteLearnedFrom())
    ip = draw(addresses(ipv6))
    port = draw(st.none() | st.integers(1, 65535))
    name = f"{kind}_{_encoded(ip)}" + (f"_port_{port}" if port is not None else "")
    source_type = "NodeMesh" if kind == "Mesh" else "BGPPeer"  # Node_, Global_, Local_Workload_
    return Source(name, CalicoNodeRouteLearnedFrom(source_type=source_type, peer_ip=ip))


@st.composite
def routes_of(draw: st.DrawFn, prefix: str, version: str, table: str | None) -> list[tuple[Route, Source]]:
    """Every route BIRD lists for one prefix (alternatives print with a blank prefix column)."""
    ipv6 = ":" in prefix
    out = []
    for position in range(draw(st.integers(1, 3))):
        source = draw(sources(ipv6))
        primary = position == 0 and draw(st.booleans())
        sync_error = primary and draw(st.booleans())
        kind = draw(st.sampled_from(["via", "dev", "ecmp", "blackhole", "unreachable", "prohibited"]))
        hops: tuple[NextHop, ...] = ()
        gateway = interface = None
        if kind in ("blackhole", "unreachable", "prohibited"):
            route_kind = RouteKind(kind)
        elif kind == "dev":
            route_kind, interface = RouteKind.DEV, draw(INTERFACES)
        else:
            route_kind, gateway, interface = RouteKind.VIA, draw(addresses(ipv6)), draw(INTERFACES)
            if kind == "ecmp":
                more = draw(st.lists(st.tuples(addresses(ipv6), INTERFACES), min_size=1, max_size=3))
                weights = draw(st.lists(st.integers(1, 256), min_size=len(more) + 1, max_size=len(more) + 1))
                hops = tuple(
                    NextHop(g, i, w) for (g, i), w in zip([(gateway, interface), *more], weights, strict=True)
                )
        route = Route(prefix, route_kind, gateway, interface, source.name, primary, sync_error, table, hops)
        out.append((route, source))
    return out


@st.composite
def route_tables(draw: st.DrawFn, version: str) -> list[tuple[Route, Source]]:
    """One daemon's `show route`: BIRD 1.6 serves one family, BIRD 2 both (master4, then master6)."""
    families = [(draw(st.booleans()), None)] if version == "1.6" else [(False, "master4"), (True, "master6")]
    table: list[tuple[Route, Source]] = []
    for ipv6, name in families:
        for prefix in draw(st.lists(prefixes(ipv6), max_size=4, unique=True)):
            table += draw(routes_of(prefix, version, name))
    return table


def expected_api_route(route: Route, source: Source) -> CalicoNodeRoute:
    """docs/collection-rules.md, Routes: FIB only for a primary BIRD synced (`*`); `N/A` and the
    kind as interface for routes without a gateway; an ECMP route with its first next hop."""
    without_gateway = route.kind in (RouteKind.BLACKHOLE, RouteKind.UNREACHABLE, RouteKind.PROHIBITED)
    return CalicoNodeRoute(
        type="FIB" if route.primary and not route.sync_error else "RIB",
        destination=route.prefix,
        gateway=route.gateway if route.kind is RouteKind.VIA else "N/A",
        interface=route.kind.value if without_gateway else route.interface,
        learned_from=source.learned_from,
    )


@st.composite
def rendered_tables(draw: st.DrawFn) -> tuple[str, list[tuple[Route, Source]], str]:
    version = draw(VERSIONS)
    table = draw(route_tables(version))
    return version, table, render.routes([r for r, _ in table], version, draw(clock(version)))


def check_routes(
    case: tuple[str, list[tuple[Route, Source]], str], parser: Callable[[list[str]], Any]
) -> None:
    _, table, text = case
    parsed = parser(parse.reply_lines(text))
    assert parsed == [route for route, _ in table]
    assert [api_route(r) for r in parsed] == [expected_api_route(r, s) for r, s in table]


@settings(max_examples=examples(100))
@given(rendered_tables())
def test_route_tables_round_trip(case: tuple[str, list[tuple[Route, Source]], str]) -> None:
    check_routes(case, parse.parse_routes)


# -- protocols -----------------------------------------------------------------------------------

BGP_INFO = st.sampled_from(
    [
        "Established",
        "Active Socket: Connection refused",
        "Idle BGP Error: Bad peer AS",
        "Connect",
        "Passive",
        "",
    ]
)
BGP_STATES = st.sampled_from(
    ["Established", "Active", "Connect", "Idle", "OpenSent", "OpenConfirm", "Down", "Passive"]
)
TEXT = st.lists(
    st.text(string.ascii_letters + string.digits + ":,()/._-", min_size=1, max_size=12),
    min_size=1,
    max_size=5,
).map(" ".join)


@st.composite
def rows(draw: st.DrawFn, version: str) -> Protocol:
    proto = draw(st.sampled_from(["BGP", "Kernel", "Device", "Direct", "Static"]))
    if proto == "BGP":
        name = draw(sources(draw(st.booleans()))).name
    else:
        name = f"{proto.lower()}{draw(st.integers(1, 9))}"
    tables = ["master"] if version == "1.6" else ["master4", "master6", "---"]
    return Protocol(
        name=name,
        proto=proto,
        table=draw(st.sampled_from(tables)),
        state=draw(st.sampled_from(["up", "start", "down", "feed", "stop", "flush", "wait"])),
        since=draw(since(version)),
        info=draw(BGP_INFO) if proto == "BGP" else "",
    )


ROUTE_STATS = st.builds(
    RouteStats,
    imported=st.integers(0, 10**6),
    exported=st.integers(0, 10**6),
    preferred=st.integers(0, 10**6),
    filtered=st.none() | st.integers(0, 10**6),
)


def _summed(stats: Sequence[RouteStats]) -> RouteStats | None:
    """BIRD 2 counts per channel; a protocol's counters are its channels' summed."""
    if not stats:
        return None
    filtered = [s.filtered for s in stats if s.filtered is not None]
    return RouteStats(
        sum(s.imported for s in stats),
        sum(s.exported for s in stats),
        sum(s.preferred for s in stats),
        sum(filtered) if filtered else None,
    )


@st.composite
def details(draw: st.DrawFn, version: str) -> ProtocolDetails:
    row = draw(rows(version))
    bgp = row.proto == "BGP"
    ipv6 = draw(st.booleans())
    channels: tuple[ChannelInfo, ...] = ()
    routes = None
    if version == "2" and row.proto != "Device":
        channels = tuple(
            ChannelInfo(
                name=name,
                state=draw(st.sampled_from(["UP", "START", "DOWN"])),
                table=f"master{name[-1]}",
                routes=draw(st.none() | ROUTE_STATS),
            )
            for name in draw(st.lists(st.sampled_from(["ipv4", "ipv6"]), min_size=1, max_size=2, unique=True))
        )
        routes = _summed([c.routes for c in channels if c.routes is not None])
    elif version == "1.6":
        routes = draw(st.none() | ROUTE_STATS)
    return ProtocolDetails(
        protocol=row,
        description=draw(st.none() | TEXT),
        bgp_state=draw(BGP_STATES) if bgp else None,
        neighbor_address=draw(addresses(ipv6)) if bgp else None,
        neighbor_as=draw(st.integers(1, 2**32 - 1)) if bgp else None,
        local_as=draw(st.integers(1, 2**32 - 1)) if bgp and version == "2" else None,
        neighbor_id=draw(st.none() | addresses(False)) if bgp else None,
        last_error=draw(st.none() | TEXT) if bgp else None,
        graceful_restart_active=bgp and draw(st.booleans()),
        routes=routes,
        channels=channels,
    )


@settings(max_examples=examples(100))
@given(st.data())
def test_protocol_tables_round_trip(data: st.DataObject) -> None:
    version = data.draw(VERSIONS)
    table = data.draw(st.lists(rows(version), max_size=6))
    assert parse.parse_protocols(parse.reply_lines(render.protocols(table, version))) == table


def check_protocols_all(
    version: str, table: list[ProtocolDetails], parser: Callable[[list[str]], Any]
) -> None:
    assert parser(parse.reply_lines(render.protocols_all(table, version))) == table


@settings(max_examples=examples(100))
@given(st.data())
def test_protocol_details_round_trip(data: st.DataObject) -> None:
    version = data.draw(VERSIONS)
    check_protocols_all(version, data.draw(st.lists(details(version), max_size=4)), parse.parse_protocols_all)


# -- status --------------------------------------------------------------------------------------


@st.composite
def statuses(draw: st.DrawFn, version: str) -> DaemonStatus:
    versions = ["1.6.8", "1.6.6", "v0.3.3+birdv1.6.8"] if version == "1.6" else ["2.0.12", "2.15.1", "3.0.0"]
    timer = "240/240" if version == "1.6" else "239.953/240"
    gr = draw(
        st.none()
        | st.builds(
            GracefulRestartStatus,
            message=st.just("Graceful restart recovery in progress"),
            waiting_for=st.none() | st.integers(0, 999),
            wait_timer=st.none() | st.just(timer),
        )
    )
    return DaemonStatus(
        version=draw(st.sampled_from(versions)),
        router_id=draw(addresses(False)),
        hostname=draw(words(string.ascii_lowercase, string.ascii_lowercase + string.digits + "-", 16))
        if version == "2"
        else None,
        server_time=draw(moments(version)),
        last_reboot=draw(moments(version)),
        last_reconfiguration=draw(moments(version)),
        message=draw(
            st.sampled_from(
                ["Daemon is up and running", "Reconfiguration in progress", "Shutdown in progress"]
            )
        ),
        graceful_restart=gr,
    )


def check_status(version: str, status: DaemonStatus, parser: Callable[[list[str]], Any]) -> None:
    assert parser(parse.reply_lines(render.status(status, version))) == status


@settings(max_examples=examples(100))
@given(st.data())
def test_status_replies_round_trip(data: st.DataObject) -> None:
    version = data.draw(VERSIONS)
    check_status(version, data.draw(statuses(version)), parse.parse_status)


# -- framing: chunk boundaries anywhere ---------------------------------------------------------


@st.composite
def rendered_replies(draw: st.DrawFn) -> str:
    version = draw(VERSIONS)
    kind = draw(st.sampled_from(["routes", "protocols_all", "status"]))
    if kind == "routes":
        return render.routes([r for r, _ in draw(route_tables(version))], version)
    if kind == "protocols_all":
        return render.protocols_all(draw(st.lists(details(version), max_size=3)), version)
    return render.status(draw(statuses(version)), version)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at arbitrary bytes, half of them inside a reply code (`NNNN-`/`NNNN `)."""
    line_starts = [0] + [i + 1 for i, byte in enumerate(data[:-1]) if byte == ord("\n")]
    in_codes = [
        start + offset for start in line_starts for offset in range(1, 5) if start + offset < len(data)
    ]
    anywhere = st.integers(1, max(1, len(data) - 1))
    cuts = draw(st.lists(st.sampled_from(in_codes) | anywhere if in_codes else anywhere, max_size=12))
    bounds = sorted({0, *cuts, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def framed(chunks: Sequence[bytes], framer_class: type = _Framer) -> tuple[list[str], str | None]:
    framer = framer_class()
    lines: list[str] = []
    for chunk in chunks:
        assert framer.final is None, "data after the final line"
        lines += framer.feed(chunk)
    return lines, framer.final


def check_framing(text: str, chunks: list[bytes], framer_class: type = _Framer) -> None:
    whole = parse.reply_lines(text)
    lines, final = framed(chunks, framer_class)
    assert [*lines, final] == whole


@settings(max_examples=examples(100))
@given(st.data())
def test_chunks_cut_anywhere_frame_the_same_lines(data: st.DataObject) -> None:
    text = data.draw(rendered_replies())
    check_framing(text, data.draw(chunked(text.encode())))


@settings(max_examples=examples(100))
@given(st.data())
def test_routes_streamed_in_chunks_equal_the_whole_reply(data: st.DataObject) -> None:
    """What the client does with `show route`: frame each chunk, feed its lines to RouteParser."""
    version = data.draw(VERSIONS)
    text = render.routes([r for r, _ in data.draw(route_tables(version))], version)
    framer, parser, streamed = _Framer(), parse.RouteParser(), []
    for chunk in data.draw(chunked(text.encode())):
        streamed += parser.feed(framer.feed(chunk))
    assert framer.final is not None
    streamed += parser.finish(framer.final)
    assert streamed == parse.parse_routes(parse.reply_lines(text))


# -- each oracle catches a broken subject --------------------------------------------------------


def _fails(check: Callable[[], None]) -> None:
    with pytest.raises(AssertionError):
        check()


def test_route_oracle_catches_a_parser_that_ignores_the_sync_error_mark() -> None:
    def broken(lines: list[str]) -> list[Route]:
        return [replace_route(r, sync_error=False) for r in parse.parse_routes(lines)]

    @CATCH
    @given(rendered_tables())
    def run(case: tuple[str, list[tuple[Route, Source]], str]) -> None:
        check_routes(case, broken)

    _fails(run)


def replace_route(route: Route, **changes: Any) -> Route:
    return route._replace(**changes)


def test_route_oracle_catches_a_parser_that_drops_ecmp_hops() -> None:
    def broken(lines: list[str]) -> list[Route]:
        return [replace_route(r, next_hops=r.next_hops[:1]) for r in parse.parse_routes(lines)]

    @CATCH
    @given(rendered_tables())
    def run(case: tuple[str, list[tuple[Route, Source]], str]) -> None:
        check_routes(case, broken)

    _fails(run)


def test_route_oracle_catches_a_renderer_that_loses_alternative_routes() -> None:
    """A renderer (or BIRD) printing only the first route of each prefix: the table differs."""

    @CATCH
    @given(st.data())
    def run(data: st.DataObject) -> None:
        version = data.draw(VERSIONS)
        table = data.draw(route_tables(version))
        firsts = [(r, s) for i, (r, s) in enumerate(table) if i == 0 or table[i - 1][0].prefix != r.prefix]
        check_routes((version, table, render.routes([r for r, _ in firsts], version)), parse.parse_routes)

    _fails(run)


def test_protocol_oracle_catches_a_parser_that_misreads_local_as() -> None:
    def broken(lines: list[str]) -> list[ProtocolDetails]:
        return [replace(d, local_as=d.neighbor_as) for d in parse.parse_protocols_all(lines)]

    @CATCH
    @given(st.data())
    def run(data: st.DataObject) -> None:
        check_protocols_all("2", data.draw(st.lists(details("2"), min_size=1, max_size=5)), broken)

    _fails(run)


def test_status_oracle_catches_a_parser_that_strips_the_forks_v() -> None:
    def broken(lines: list[str]) -> DaemonStatus:
        status = parse.parse_status(lines)
        return replace(status, version=(status.version or "").lstrip("v") or None)

    @CATCH
    @given(st.data())
    def run(data: st.DataObject) -> None:
        check_status("1.6", data.draw(statuses("1.6")), broken)

    _fails(run)


class _LineAtATimeFramer(_Framer):
    """The classic bug: each chunk decoded and split on its own, a line cut in two kept as two."""

    def feed(self, data: bytes) -> list[str]:
        lines = data.decode().split("\n")
        if lines[-1] == "":
            lines.pop()
        if lines and lines[-1][:4].isdigit() and lines[-1][4:5] == " ":
            self.final = lines.pop()
        return lines


def test_framing_oracle_catches_a_framer_that_splits_each_chunk_alone() -> None:
    @CATCH
    @given(st.data())
    def run(data: st.DataObject) -> None:
        text = data.draw(rendered_replies())
        check_framing(text, data.draw(chunked(text.encode())), _LineAtATimeFramer)

    _fails(run)
