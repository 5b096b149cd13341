"""Transcripts → status sections, with the expected wire output written out."""

from __future__ import annotations

import json

import pytest

from calico_nodestatus.api import BGPSessionState, CalicoNodeRoute, NodeStatusClass
from calico_nodestatus.bird import parse
from calico_nodestatus.bird.types import Route, RouteKind
from calico_nodestatus.collect.sections import (
    MIN_ROUTE_WIRE_BYTES,
    RouteAccumulator,
    api_route,
    bgp_by_family,
    route_limit_for_budget,
    route_wire_bytes,
    session_state,
    status_sections,
)
from tests.bird.transcripts import lines

ALL = tuple(NodeStatusClass)


def _bird16(scenario: str, phase: str = "") -> dict:
    """Status of node 1 from BIRD 1.6 transcripts: bird (IPv4) and bird6 (IPv6)."""
    routes = RouteAccumulator()
    daemons, protocols = {}, {}
    for family, daemon in ((4, ""), (6, "bird6__")):
        daemons[family] = parse.parse_status(lines("1.6.8", scenario, f"{daemon}show_status"))
        details = parse.parse_protocols_all(lines("1.6.8", scenario, f"{phase}{daemon}show_protocols_all"))
        protocols.update(bgp_by_family(details, (family,)))
        routes.add(parse.parse_routes(lines("1.6.8", scenario, f"{phase}{daemon}show_route")))
    status, unknown = status_sections(ALL, daemons, protocols, routes)
    assert unknown == ()
    return status.to_wire()


def _bird2(scenario: str, phase: str = "") -> dict:
    routes = RouteAccumulator()
    daemon = parse.parse_status(lines("2.0.12", scenario, f"{phase}show_status"))
    details = parse.parse_protocols_all(lines("2.0.12", scenario, f"{phase}show_protocols_all"))
    routes.add(parse.parse_routes(lines("2.0.12", scenario, f"{phase}show_route")))
    status, _ = status_sections(ALL, {4: daemon, 6: daemon}, bgp_by_family(details, (4, 6)), routes)
    return status.to_wire()


def test_mesh3_bird16() -> None:
    wire = _bird16("mesh3")
    ready = {"state": "Ready", "version": "1.6.8", "routerID": "198.18.0.1"}
    assert {k: wire["agent"]["birdV4"][k] for k in ready} == ready
    assert wire["agent"]["birdV6"]["state"] == "Ready"
    assert wire["bgp"] == {
        "numberEstablishedV4": 2,
        "numberNotEstablishedV4": 0,
        "numberEstablishedV6": 2,
        "numberNotEstablishedV6": 0,
        "peersV4": [
            {"peerIP": "198.18.0.2", "type": "NodeMesh", "state": "Established", "since": "00:34:52"},
            {"peerIP": "198.18.0.3", "type": "NodeMesh", "state": "Established", "since": "00:34:52"},
        ],
        "peersV6": [
            {"peerIP": "2001:db8::2", "type": "NodeMesh", "state": "Established", "since": "00:34:52"},
            {"peerIP": "2001:db8::3", "type": "NodeMesh", "state": "Established", "since": "00:34:52"},
        ],
    }
    assert wire["routes"]["routesV4"] == [
        {"type": "FIB", "destination": "198.19.0.0/26", "gateway": "N/A", "interface": "blackhole",
         "learnedFrom": {"sourceType": "Static"}},
        {"type": "FIB", "destination": "198.19.0.64/26", "gateway": "198.18.0.2", "interface": "eth0",
         "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "198.18.0.2"}},
        {"type": "FIB", "destination": "198.19.0.128/26", "gateway": "198.18.0.3", "interface": "eth0",
         "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "198.18.0.3"}},
        {"type": "FIB", "destination": "198.18.0.0/24", "gateway": "N/A", "interface": "eth0",
         "learnedFrom": {"sourceType": "Direct"}},
    ]  # fmt: skip
    v6 = {r["destination"]: r for r in wire["routes"]["routesV6"]}
    assert v6["2001:db8:1::40/122"]["learnedFrom"] == {"sourceType": "NodeMesh", "peerIP": "2001:db8::2"}
    assert v6["2001:db8:1::/122"]["interface"] == "blackhole"


def test_mesh3_bird2_splits_one_daemon_by_family() -> None:
    wire = _bird2("mesh3")
    assert wire["agent"]["birdV4"] == wire["agent"]["birdV6"]
    assert wire["agent"]["birdV4"]["version"] == "2.0.12"
    assert [p["peerIP"] for p in wire["bgp"]["peersV4"]] == ["198.18.0.2", "198.18.0.3"]
    assert [p["peerIP"] for p in wire["bgp"]["peersV6"]] == ["2001:db8::2", "2001:db8::3"]
    assert wire["bgp"]["numberEstablishedV4"] == 2 and wire["bgp"]["numberEstablishedV6"] == 2
    assert all(":" not in r["destination"] for r in wire["routes"]["routesV4"])
    assert all(":" in r["destination"] for r in wire["routes"]["routesV6"])


def test_peerdown_states_and_counters() -> None:
    details = parse.parse_protocols_all(
        lines("1.6.8", "peerdown", "t0_before__show_protocols_all_Mesh_198_18_0_4")
    )
    status, _ = status_sections((NodeStatusClass.BGP,), {}, bgp_by_family(details, (4,)), RouteAccumulator())
    assert status.to_wire()["bgp"] == {
        "numberEstablishedV4": 0,
        "numberNotEstablishedV4": 1,
        "numberEstablishedV6": 0,
        "numberNotEstablishedV6": 0,
        "peersV4": [
            {"peerIP": "198.18.0.4", "type": "NodeMesh", "state": "Idle", "since": details[0].protocol.since}
        ],
    }


# Node 2's view while node 1 was down (gr): node 2 is passive towards node 1, so BIRD shows
# `Passive`, the BGP FSM's Active state with no dialling of its own.
_PASSIVE = {
    "1.6.8": ("b_helper_n2_while_n1_down__show_protocols_all_Mesh_198_18_0_1",
              "b_helper_n2_while_n1_down__bird6__show_protocols_all_Mesh_2001_db8__1"),
    "2.0.12": ("b_helper_n2_while_n1_down__show_protocols_all_Mesh_198_18_0_1",
               "b_helper_n2_while_n1_down__show_protocols_all_Mesh_2001_db8__1"),
}  # fmt: skip


@pytest.mark.parametrize("version", sorted(_PASSIVE))
def test_passive_peer_is_active(version: str) -> None:
    details = [d for name in _PASSIVE[version] for d in parse.parse_protocols_all(lines(version, "gr", name))]
    assert [d.bgp_state for d in details] == ["Passive", "Passive"]
    status, _ = status_sections(
        (NodeStatusClass.BGP,), {}, bgp_by_family(details, (4, 6)), RouteAccumulator()
    )
    since_v4, since_v6 = (d.protocol.since for d in details)
    assert status.to_wire()["bgp"] == {
        "numberEstablishedV4": 0,
        "numberNotEstablishedV4": 1,
        "numberEstablishedV6": 0,
        "numberNotEstablishedV6": 1,
        "peersV4": [{"peerIP": "198.18.0.1", "type": "NodeMesh", "state": "Active", "since": since_v4}],
        "peersV6": [{"peerIP": "2001:db8::1", "type": "NodeMesh", "state": "Active", "since": since_v6}],
    }
    # The `show protocols` row, used when the detail lacks a BGP state line, maps the same way.
    rows = parse.parse_protocols(lines(version, "gr", "b_helper_n2_while_n1_down__show_protocols"))
    assert {p.name: session_state(p.bgp_state) for p in rows if p.proto == "BGP"} == {
        "Mesh_198_18_0_1": BGPSessionState.ACTIVE,
        "Mesh_198_18_0_3": BGPSessionState.ESTABLISHED,
    } | ({"Mesh_2001_db8__1": BGPSessionState.ACTIVE, "Mesh_2001_db8__3": BGPSessionState.ESTABLISHED}
         if version == "2.0.12" else {})  # fmt: skip


def test_peertypes_sources_and_ecmp() -> None:
    wire = _bird16("peertypes")
    peers = {p["peerIP"]: p["type"] for p in wire["bgp"]["peersV4"]}
    assert peers == {"198.18.0.2": "NodeMesh", "198.18.0.4": "GlobalPeer", "198.18.0.3": "NodePeer"}
    routes = wire["routes"]["routesV4"]
    shared = [r for r in routes if r["destination"] == "198.18.100.0/24"]
    assert shared == [
        {"type": "FIB", "destination": "198.18.100.0/24", "gateway": "198.18.0.2", "interface": "eth0",
         "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "198.18.0.2"}},
        {"type": "RIB", "destination": "198.18.100.0/24", "gateway": "198.18.0.4", "interface": "eth0",
         "learnedFrom": {"sourceType": "BGPPeer", "peerIP": "198.18.0.4"}},
        {"type": "RIB", "destination": "198.18.100.0/24", "gateway": "198.18.0.3", "interface": "eth0",
         "learnedFrom": {"sourceType": "BGPPeer", "peerIP": "198.18.0.3"}},
    ]  # fmt: skip
    by_dest = {r["destination"]: r for r in routes}
    # Upstream aborts the whole cycle on these two (A7); we report them.
    assert by_dest["198.18.110.0/24"] == {
        "type": "FIB", "destination": "198.18.110.0/24", "gateway": "198.18.0.2", "interface": "eth0",
        "learnedFrom": {"sourceType": "Static"},
    }  # fmt: skip
    assert by_dest["198.18.98.0/24"]["interface"] == "prohibited"
    assert by_dest["198.19.0.5/32"] == {
        "type": "FIB", "destination": "198.19.0.5/32", "gateway": "N/A", "interface": "cali0a1b2c3d4e5",
        "learnedFrom": {"sourceType": "Kernel"},
    }  # fmt: skip
    assert len(routes) == 15


def test_graceful_restart_is_not_ready_but_keeps_fields() -> None:
    wire = _bird2("gr", "c03_3s_after_restart__")
    assert wire["agent"]["birdV4"]["state"] == "NotReady"
    assert wire["agent"]["birdV4"]["routerID"] == "198.18.0.1"
    assert wire["bgp"]["numberEstablishedV4"] == 2 and wire["bgp"]["numberNotEstablishedV4"] == 1


def test_missing_ipv6_daemon_keeps_ipv4() -> None:
    daemon = parse.parse_status(lines("1.6.8", "mesh3", "show_status"))
    details = parse.parse_protocols_all(lines("1.6.8", "mesh3", "show_protocols_all"))
    routes = RouteAccumulator()
    routes.add(parse.parse_routes(lines("1.6.8", "mesh3", "show_route")))
    status, _ = status_sections(ALL, {4: daemon, 6: None}, bgp_by_family(details, (4,)), routes)
    wire = status.to_wire()
    assert wire["agent"]["birdV6"] == {"state": "NotReady"}
    assert wire["agent"]["birdV4"]["state"] == "Ready"
    assert wire["bgp"]["numberEstablishedV4"] == 2 and len(wire["bgp"]["peersV4"]) == 2
    assert "peersV6" not in wire["bgp"]  # empty and absent are the same thing
    assert len(wire["routes"]["routesV4"]) == 4 and "routesV6" not in wire["routes"]


def test_unknown_protocol_and_port_names_do_not_discard_routes() -> None:
    def route(prefix: str, protocol: str) -> Route:
        return Route(prefix, RouteKind.VIA, "198.18.0.7", "eth0", protocol, True, False, None, ())

    routes = RouteAccumulator(limit=2)
    routes.add([route("198.19.1.0/26", "my_custom_bgp"), route("198.19.2.0/26", "Node_198_18_0_7_port_8179"),
                route("198.19.3.0/26", "Mesh_198_18_0_7")])  # fmt: skip
    status, unknown = status_sections((NodeStatusClass.ROUTES,), {}, {}, routes)
    assert unknown == ("my_custom_bgp",)
    assert [r["learnedFrom"] for r in status.to_wire()["routes"]["routesV4"]] == [
        {},
        {"sourceType": "BGPPeer", "peerIP": "198.18.0.7"},
    ]
    assert routes.total(False) == 3  # the limit trims the status, not the counts
    assert {k: (t.fib, t.rib) for k, t in routes.tallies(False).items()} == {
        "Other": (1, 0), "BGPPeer": (1, 0), "NodeMesh": (1, 0),
    }  # fmt: skip


def test_route_limit_for_budget_never_drops_a_route_that_fits() -> None:
    smallest = CalicoNodeRoute(type="FIB", destination="::/0", gateway="N/A")
    wire = json.dumps(smallest.to_wire(), separators=(",", ":"))
    assert len(wire) + 1 == MIN_ROUTE_WIRE_BYTES  # the constant is the real smallest route
    assert route_limit_for_budget(1024 * 1024) == 15196
    assert route_limit_for_budget(0) == 0


def test_fixed_limit_prefers_fib_and_keeps_bird_order() -> None:
    def route(prefix: str, primary: bool) -> Route:
        return Route(prefix, RouteKind.VIA, "198.18.0.7", "eth0", "Mesh_198_18_0_7", primary, False, None, ())

    routes = RouteAccumulator(limit=3)
    routes.add([route("198.19.1.0/26", False), route("198.19.2.0/26", False), route("198.19.3.0/26", True)])
    routes.add([route("198.19.4.0/26", True), route("198.19.5.0/26", False)])
    kept = [(r.destination, r.type) for r in routes.routes_v4]
    assert kept == [("198.19.1.0/26", "RIB"), ("198.19.3.0/26", "FIB"), ("198.19.4.0/26", "FIB")]
    assert routes.total(False) == 5 and routes.routes_v6 == []


def _every_transcript_route() -> list[Route]:
    routes: list[Route] = []
    for version, scenario, name in (
        ("1.6.8", "mesh3", "show_route"),
        ("1.6.8", "mesh3", "bird6__show_route"),
        ("2.0.12", "mesh3", "show_route"),
        ("2.0.12", "peertypes", "show_route"),
    ):
        routes.extend(parse.parse_routes(lines(version, scenario, name)))
    return routes


def test_route_wire_bytes_is_the_encoded_size() -> None:
    odd = Route('2001:db8::/64"\\', RouteKind.VIA, "fe80::ü", "e0", "Mesh_1_2_3_4", True, False, None, ())
    unreachable = Route("198.19.9.0/24", RouteKind.UNREACHABLE, None, None, "static1", False, False, None, ())
    routes = [*_every_transcript_route(), odd, unreachable]
    assert len(routes) > 10
    for route in routes:
        encoded = json.dumps(api_route(route).to_wire(), separators=(",", ":"), ensure_ascii=False)
        assert route_wire_bytes(route) == len(encoded.encode()) + 1, route


def test_byte_budget_keeps_fib_first_within_the_bytes() -> None:
    def route(i: int, primary: bool, v6: bool = False) -> Route:
        prefix = f"2001:db8:1::{i:x}/128" if v6 else f"198.19.{i // 256}.{i % 256}/32"
        return Route(prefix, RouteKind.VIA, "198.18.0.7", "eth0", "Mesh_198_18_0_7", primary, False, None, ())

    v4 = [route(i, primary=i % 3 == 0) for i in range(300)]
    v6 = [route(i, primary=True, v6=True) for i in range(100)]
    fib_bytes = sum(route_wire_bytes(r) for r in v4 + v6 if r.primary)
    budget = fib_bytes + sum(route_wire_bytes(r) for r in [r for r in v4 if not r.primary][:10])
    routes = RouteAccumulator(limit=1000, limit_per_type=True, byte_budget=budget)
    routes.add(v4[:150])
    routes.add(v6)
    routes.add(v4[150:])
    kept_v4 = [r.destination for r in routes.routes_v4]
    fib_v4 = [r.prefix for r in v4 if r.primary]
    rib_v4 = [r.prefix for r in v4 if not r.primary]
    assert set(fib_v4) <= set(kept_v4) and len(routes.routes_v6) == 100
    assert [d for d in kept_v4 if d in rib_v4] == rib_v4[:10]  # RIB only in the room left, in order
    assert kept_v4 == [r.prefix for r in v4 if r.prefix in set(kept_v4)]  # BIRD's order
    assert routes.total(False) == 300  # counted, all of them
    wire = json.dumps([r.to_wire() for r in routes.routes_v4 + routes.routes_v6], separators=(",", ":"))
    assert len(wire) - 1 <= budget  # brackets out, last comma in: the routes' own bytes


def test_budget_keeps_fib_first_and_shares_each_type_fairly_between_families() -> None:
    from calico_nodestatus.collect.sections import select_within_budget

    flood_v4 = [(True, 100)] * 50  # 5,000 bytes of IPv4 FIB routes
    few_v6 = [(True, 100)] * 3 + [(False, 100)] * 2  # 300 bytes FIB, 200 RIB
    keep_v4, keep_v6 = select_within_budget([flood_v4, few_v6], budget=1_000)
    # IPv6 needs less than an even share, so all its FIB routes stay; IPv4 FIB takes the rest,
    # and nothing is left for RIB routes.
    assert keep_v6 == [True, True, True, False, False]
    assert sum(keep_v4) == 7
    # With room to spare, RIB routes follow the FIB ones.
    roomy = select_within_budget([[(True, 10), (False, 10)], [(False, 10)]], budget=30)
    assert roomy == [[True, True], [True]]
    # A route too big for what is left is skipped; a smaller one after it still fits.
    assert select_within_budget([[(True, 80), (True, 50), (True, 10)]], budget=100) == [[True, False, True]]
