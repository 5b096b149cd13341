"""Every parser over every real transcript, with the important results written out."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import BirdParseError
from calico_nodestatus.bird.types import NextHop, RouteKind, TableCount
from tests.bird.transcripts import FIXTURES, all_transcripts, lines, parser_for

PARSED = [p for p in all_transcripts() if parser_for(p) is not None]
ERROR_REPLY_CODES = ("8", "9")


def test_every_scenario_of_both_versions_is_covered() -> None:
    scenarios = {(p.parent.parent.name, p.parent.name) for p in PARSED}
    for version in ("1.6.8", "2.0.12"):
        for scenario in ("mesh3", "peerdown", "peertypes", "gr", "errors", "big"):
            assert (version, scenario) in scenarios


@pytest.mark.parametrize("path", PARSED, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_transcript_parses_or_is_an_error_reply(path: Path) -> None:
    reply = parse.reply_lines(path.read_bytes())
    parser = parser_for(path)
    assert parser is not None
    if reply[-1][:1] in ERROR_REPLY_CODES:
        # 8xxx/9xxx replies are the client's business; handed to a parser they are just unexpected.
        with pytest.raises(BirdParseError):
            parser(reply)
    else:
        assert parser(reply) is not None


def test_status_16() -> None:
    status = parse.parse_status(lines("1.6.8", "peertypes", "show_status"))
    assert status.version == "1.6.8"
    assert status.router_id == "198.18.0.1"
    assert status.hostname is None
    assert status.server_time == "2026-11-25 00:16:30"
    assert status.last_reboot == "2026-11-25 00:16:20"
    assert status.last_reconfiguration == "2026-11-25 00:16:20"
    assert status.message == "Daemon is up and running"
    assert status.graceful_restart is None and status.is_up


def test_status_2_with_graceful_restart() -> None:
    status = parse.parse_status(lines("2.0.12", "gr", "c00_0s_after_restart__show_status"))
    assert (status.version, status.hostname, status.last_reboot) == (
        "2.0.12",
        "vm",
        "2026-11-25 00:22:04.414",
    )
    assert status.graceful_restart is not None
    assert status.graceful_restart.message == "Graceful restart recovery in progress"
    assert status.graceful_restart.waiting_for == 6
    assert status.graceful_restart.wait_timer == "239.953/240"
    assert not status.is_up


def test_status_16_graceful_restart_ends() -> None:
    during = parse.parse_status(lines("1.6.8", "gr", "c00_0s_after_restart__show_status"))
    after = parse.parse_status(lines("1.6.8", "gr", "c11_250s_after_restart__show_status"))
    assert during.graceful_restart is not None and during.graceful_restart.waiting_for == 3
    assert during.graceful_restart.wait_timer == "240/240"
    assert after.graceful_restart is None and after.is_up


def test_protocols_16_and_2() -> None:
    old = parse.parse_protocols(lines("1.6.8", "peertypes", "show_protocols"))
    assert [(p.name, p.proto, p.table, p.state, p.since, p.info) for p in old] == [
        ("kernel1", "Kernel", "master", "up", "00:16:20", ""),
        ("device1", "Device", "master", "up", "00:16:20", ""),
        ("direct1", "Direct", "master", "up", "00:16:20", ""),
        ("static1", "Static", "master", "up", "00:16:20", ""),
        ("Mesh_198_18_0_2", "BGP", "master", "up", "00:16:22", "Established"),
        ("Global_198_18_0_4", "BGP", "master", "up", "00:16:22", "Established"),
        ("Node_198_18_0_3", "BGP", "master", "up", "00:16:22", "Established"),
    ]
    new = parse.parse_protocols(lines("2.0.12", "peertypes", "show_protocols"))
    assert [p.name for p in new if p.proto == "BGP"] == [
        "Mesh_198_18_0_2",
        "Global_198_18_0_4",
        "Node_198_18_0_3",
        "Mesh_2001_db8__2",
        "Global_2001_db8__4",
        "Node_2001_db8__3",
    ]
    assert (new[0].table, new[0].since, new[2].table) == ("master4", "00:16:36.393", "---")


def test_protocols_not_established() -> None:
    rows = parse.parse_protocols(lines("1.6.8", "peerdown", "t2_3s_after_stop__show_protocols"))
    bgp = {p.name: (p.state, p.info) for p in rows if p.proto == "BGP"}
    assert bgp["Mesh_198_18_0_4"] == ("start", "Idle BGP Error: Bad peer AS")
    assert bgp["Global_198_18_250_1"][1].startswith("Active Socket: Network is unreachable")
    assert rows[-1].bgp_state in {"Active", "Connect", "Idle", "Passive"}


def test_protocols_all_16() -> None:
    details = {
        d.protocol.name: d
        for d in parse.parse_protocols_all(lines("1.6.8", "peertypes", "show_protocols_all"))
    }
    assert list(details) == [
        "kernel1", "device1", "direct1", "static1", "Mesh_198_18_0_2", "Global_198_18_0_4", "Node_198_18_0_3",
    ]  # fmt: skip
    mesh = details["Mesh_198_18_0_2"]
    assert (mesh.bgp_state, mesh.neighbor_address, mesh.neighbor_as, mesh.neighbor_id) == (
        "Established", "198.18.0.2", 64512, "198.18.0.2",
    )  # fmt: skip
    assert mesh.description == "Connection to BGP peer"
    assert (mesh.routes.imported, mesh.routes.exported, mesh.routes.preferred) == (3, 1, 3)
    glob = details["Global_198_18_0_4"]
    assert (glob.neighbor_as, glob.routes.imported, glob.routes.exported, glob.routes.preferred) == (
        64600,
        2,
        2,
        1,
    )
    assert details["static1"].routes.imported == 4 and details["static1"].bgp_state is None


def test_protocols_all_2_channels() -> None:
    details = {
        d.protocol.name: d
        for d in parse.parse_protocols_all(lines("2.0.12", "peertypes", "show_protocols_all"))
    }
    mesh = details["Mesh_198_18_0_2"]
    assert (mesh.bgp_state, mesh.neighbor_address, mesh.local_as) == ("Established", "198.18.0.2", 64512)
    assert [(c.name, c.state, c.table) for c in mesh.channels] == [("ipv4", "UP", "master4")]
    assert (mesh.routes.imported, mesh.routes.exported, mesh.routes.preferred) == (3, 1, 3)
    assert details["Mesh_2001_db8__2"].neighbor_address == "2001:db8::2"


def test_protocols_all_peer_down_with_graceful_restart() -> None:
    (mesh,) = parse.parse_protocols_all(
        lines("1.6.8", "peerdown", "t1_0.3s_after_stop__show_protocols_all_Mesh_198_18_0_2")
    )
    assert mesh.protocol.state == "start"
    assert mesh.bgp_state == "Active"
    assert mesh.graceful_restart_active


def test_routes_16_peertypes() -> None:
    routes = parse.parse_routes(lines("1.6.8", "peertypes", "show_route"))
    assert len(routes) == 15
    by_prefix = {}
    for r in routes:
        by_prefix.setdefault(r.prefix, []).append(r)
    ecmp = by_prefix["198.18.203.0/24"][0]
    assert (ecmp.kind, ecmp.gateway, ecmp.interface, ecmp.protocol, ecmp.primary) == (
        RouteKind.VIA, "198.18.0.2", "eth0", "kernel1", True,
    )  # fmt: skip
    assert ecmp.next_hops == (NextHop("198.18.0.2", "eth0", 1), NextHop("198.18.0.3", "eth0", 1))
    shared = by_prefix["198.18.100.0/24"]
    assert [(r.protocol, r.gateway, r.primary) for r in shared] == [
        ("Mesh_198_18_0_2", "198.18.0.2", True),
        ("Global_198_18_0_4", "198.18.0.4", False),
        ("Node_198_18_0_3", "198.18.0.3", False),
    ]
    assert by_prefix["198.19.0.0/26"][0].kind is RouteKind.BLACKHOLE
    assert by_prefix["198.18.98.0/24"][0].kind is RouteKind.PROHIBITED
    assert by_prefix["198.18.99.0/24"][0].kind is RouteKind.UNREACHABLE
    dev = by_prefix["198.19.0.5/32"][0]
    assert (dev.kind, dev.gateway, dev.interface) == (RouteKind.DEV, None, "cali0a1b2c3d4e5")
    assert all(r.table is None for r in routes)


def test_routes_2_both_tables() -> None:
    routes = parse.parse_routes(lines("2.0.12", "peertypes", "show_route"))
    assert len(routes) == 30
    assert {r.table for r in routes if r.is_ipv6} == {"master6"}
    assert {r.table for r in routes if not r.is_ipv6} == {"master4"}
    first_v6 = next(r for r in routes if r.is_ipv6)
    assert tuple(first_v6)[:6] == (
        "2001:db8:1::40/122",
        RouteKind.VIA,
        "2001:db8::2",
        "eth0",
        "Mesh_2001_db8__2",
        True,
    )
    shared = [r for r in routes if r.prefix == "2001:db8:100::/48"]
    assert [(r.protocol, r.primary) for r in shared] == [
        ("Mesh_2001_db8__2", True), ("Node_2001_db8__3", False), ("Global_2001_db8__4", False),
    ]  # fmt: skip
    dev = next(r for r in routes if r.prefix == "2001:db8::/64")
    assert (dev.kind, dev.interface, dev.protocol) == (RouteKind.DEV, "eth0", "direct1")


@pytest.mark.parametrize("version", ["1.6.8", "2.0.12"])
def test_route_all_matches_route(version: str) -> None:
    plain = parse.parse_routes(lines(version, "peertypes", "show_route"))
    detailed = parse.parse_routes(lines(version, "peertypes", "show_route_all"))
    assert detailed == plain


def test_routes_stale_during_graceful_restart() -> None:
    routes = parse.parse_routes(lines("1.6.8", "peerdown", "t1_0.3s_after_stop__show_route"))
    assert any(r.protocol == "Mesh_198_18_0_2" for r in routes)


def test_route_count() -> None:
    assert parse.parse_route_count(lines("1.6.8", "peertypes", "show_route_count")).total == TableCount(
        None, 15, 15, 13
    )
    count = parse.parse_route_count(lines("2.0.12", "peertypes", "show_route_count"))
    assert count.tables == (TableCount("master4", 15, 15, 13), TableCount("master6", 15, 15, 13))
    assert count.total == TableCount(None, 30, 30, 26)


@pytest.mark.parametrize("version", ["1.6.8", "2.0.12"])
def test_big_table_streamed_in_arbitrary_chunks(version: str) -> None:
    import gzip

    data = gzip.decompress((FIXTURES / version / "big" / "show_route_v4_10k.txt.gz").read_bytes())
    reply = parse.reply_lines(data)
    whole = parse.parse_routes(reply)
    assert sum(not r.is_ipv6 for r in whole) == 10003  # `show route count` of the IPv4 table
    parser = parse.RouteParser()
    streamed = []
    body = reply[:-1]
    for start in range(0, len(body), 777):  # chunk edges fall between a route and its next hop
        streamed += parser.feed(body[start : start + 777])
    streamed += parser.finish(reply[-1])
    assert streamed == whole
    # the 10,000 big routes plus node 2's pod block
    assert sum(r.protocol == "Mesh_198_18_0_2" for r in whole) == 10001


def test_reconfiguration_interrupt_is_not_a_successful_end() -> None:
    parser = parse.RouteParser()
    parser.feed(lines("1.6.8", "mesh3", "show_route")[:-1])
    with pytest.raises(BirdParseError):
        parser.finish("8004 Stopped due to reconfiguration")


@pytest.mark.parametrize(
    ("version", "scenario", "name", "weights"),
    [
        ("2.0.12", "peertypes", "show_route", True),  # ECMP: two next-hop lines
        ("2.0.12", "peertypes", "show_route", False),  # ECMP hops without weights: `via X on Y`
        ("2.0.12", "peertypes", "show_route_all", True),  # attribute blocks between routes
        ("2.0.12", "mesh3", "show_route", True),
        ("2.0.12", "peerdown", "t2_3s_after_stop__show_route", True),
        ("1.6.8", "peertypes", "show_route", True),
    ],
)
def test_two_line_fast_path_matches_the_line_by_line_parse(
    version: str, scenario: str, name: str, weights: bool
) -> None:
    """One line per feed() never lets the parser see a route line and its next hop together, so
    it takes the line-by-line path; larger chunks take the two-line path where they can."""
    reply = lines(version, scenario, name)
    if not weights:
        reply = [line.removesuffix(" weight 1") for line in reply]
    body = reply[:-1]

    def streamed(chunk: int) -> list:
        parser = parse.RouteParser()
        routes = []
        for start in range(0, len(body), chunk):
            routes += parser.feed(body[start : start + chunk])
        return routes + parser.finish(reply[-1])

    line_by_line = streamed(1)
    assert len(line_by_line) >= 5
    assert weights or any(len(route.next_hops) == 2 for route in line_by_line)
    for chunk in (2, 3, 4, 5, len(body)):
        assert streamed(chunk) == line_by_line, chunk
