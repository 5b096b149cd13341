"""A failed piece keeps its last good content and is named in the collection-errors annotation
(agent/stale.py, pure); the routes-omitted annotation marks lists cut short (agent/budget.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from calico_nodestatus.agent.budget import annotation_value, read_annotation
from calico_nodestatus.agent.stale import (
    COLLECTION_ERRORS_ANNOTATION,
    PieceError,
    collection_errors_value,
    keep_last_good,
    stale_pieces,
)
from calico_nodestatus.api import (
    BGPDaemonStatus,
    CalicoNodeAgentStatus,
    CalicoNodeBGPRouteStatus,
    CalicoNodeBGPStatus,
    CalicoNodePeer,
    CalicoNodeRoute,
    CalicoNodeStatusStatus,
    NodeStatusClass,
)

AGENT, BGP, ROUTES = NodeStatusClass.AGENT, NodeStatusClass.BGP, NodeStatusClass.ROUTES
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _daemon(router_id: str) -> BGPDaemonStatus:
    return BGPDaemonStatus(
        state="Ready", version="v0.3.3+birdv1.6.8", router_id=router_id, last_boot_time="2026-01-01 00:00:00"
    )


def _peer(ip: str) -> CalicoNodePeer:
    return CalicoNodePeer(peer_ip=ip, type="NodeMesh", state="Established", since="01:02:03")


def _route(destination: str) -> CalicoNodeRoute:
    return CalicoNodeRoute(type="FIB", destination=destination, gateway="N/A", interface="blackhole")


GOOD = CalicoNodeStatusStatus(
    agent=CalicoNodeAgentStatus(bird_v4=_daemon("198.18.0.1"), bird_v6=_daemon("198.18.0.1")),
    bgp=CalicoNodeBGPStatus(
        number_established_v4=2,
        number_not_established_v4=1,
        number_established_v6=2,
        peers_v4=[_peer("198.18.0.2"), _peer("198.18.0.3"), _peer("198.18.0.4")],
        peers_v6=[_peer("2001:db8::2"), _peer("2001:db8::3")],
    ),
    routes=CalicoNodeBGPRouteStatus(
        routes_v4=[_route("198.19.0.0/26")], routes_v6=[_route("2001:db8:1::/122")]
    ),
)
# What a collection gives when bird6 cannot be queried: v6 empty, bird6 NotReady, v4 fresh.
V6_DOWN = GOOD.model_copy(
    update={
        "agent": GOOD.agent.model_copy(update={"bird_v6": BGPDaemonStatus(state="NotReady")}),
        "bgp": GOOD.bgp.model_copy(update={"number_established_v6": 0, "peers_v6": []}),
        "routes": GOOD.routes.model_copy(update={"routes_v6": []}),
    }
)
DOWN = PieceError("unable to connect to BIRD socket bird6.ctl: connection refused", daemon_down=True)
V6_ERRORS = {(6, AGENT): DOWN, (6, BGP): DOWN, (6, ROUTES): DOWN}


def test_failed_pieces_keep_the_stored_content_and_the_daemon_is_not_ready() -> None:
    kept = keep_last_good(V6_DOWN, GOOD, V6_ERRORS)
    assert kept.stale == set(V6_ERRORS)
    status = kept.status
    assert status.bgp == GOOD.bgp  # peers and counters of v6 kept, never zeros
    assert status.routes == GOOD.routes
    assert status.agent.bird_v6 == GOOD.agent.bird_v6.model_copy(update={"state": "NotReady"})
    assert status.agent.bird_v4 == GOOD.agent.bird_v4


def test_only_the_failed_piece_is_kept_the_rest_is_fresh() -> None:
    fresh = GOOD.model_copy(
        update={
            "bgp": GOOD.bgp.model_copy(update={"number_established_v4": 3, "number_not_established_v4": 0})
        }
    ).model_copy(update={"routes": CalicoNodeBGPRouteStatus(routes_v4=[_route("198.19.1.0/26")])})
    kept = keep_last_good(fresh, GOOD, {(6, ROUTES): PieceError("cut")})
    assert kept.status.bgp.number_established_v4 == 3  # BGP was collected: fresh
    assert kept.status.routes.routes_v4 == [_route("198.19.1.0/26")]  # v4 routes collected: fresh
    assert kept.status.routes.routes_v6 == GOOD.routes.routes_v6  # v6 routes failed: last good


def test_without_earlier_content_a_piece_is_left_out_and_partial_routes_are_marked() -> None:
    partial = V6_DOWN.model_copy(
        update={"routes": CalicoNodeBGPRouteStatus(routes_v4=[_route("198.19.0.0/26")])}
    )
    errors = {(4, ROUTES): PieceError("8004 Stopped due to reconfiguration"), **V6_ERRORS}
    kept = keep_last_good(partial, CalicoNodeStatusStatus(), errors)
    assert kept.partial == {(4, ROUTES)}
    assert kept.missing == set(V6_ERRORS)
    assert kept.status.routes.routes_v4 == partial.routes.routes_v4
    value = json.loads(collection_errors_value(kept, None, NOW) or "")
    # A daemon that is not running leaves nothing stale: its pieces are not marked (Agent: NotReady).
    assert value == {
        "Routes/v4": {
            "since": "2026-01-02T03:04:05Z",
            "error": "8004 Stopped due to reconfiguration",
            "content": "partial",
        }
    }


def test_annotation_keeps_since_and_clears_when_everything_is_collected() -> None:
    kept = keep_last_good(V6_DOWN, GOOD, V6_ERRORS)
    first = collection_errors_value(kept, None, NOW)
    assert first is not None
    later = collection_errors_value(kept, first, datetime(2026, 1, 2, 3, 9, tzinfo=UTC))
    assert later == first  # same pieces, same error: the same value, nothing to write
    entries = json.loads(first)
    assert set(entries) == {"Agent/v6", "BGP/v6", "Routes/v6"}
    assert {entry["content"] for entry in entries.values()} == {"stale"}
    assert stale_pieces({COLLECTION_ERRORS_ANNOTATION: first}) == ("Agent/v6", "BGP/v6", "Routes/v6")
    assert collection_errors_value(keep_last_good(GOOD, GOOD, {}), first, NOW) is None
    assert stale_pieces({COLLECTION_ERRORS_ANNOTATION: "not json"}) == ()


def test_routes_omitted_marks_lists_cut_short() -> None:
    assert annotation_value({"v4": 0, "v6": 0}) is None
    value = annotation_value({"v4": 120, "v6": 0}, cut_short={"v4"})
    assert value == '{"v4":120,"v6":0,"cutShort":["v4"]}'
    assert read_annotation(value) == ({"v4": 120, "v6": 0}, frozenset({"v4"}))
    assert annotation_value({"v4": 0, "v6": 0}, cut_short={"v6"}) == '{"v4":0,"v6":0,"cutShort":["v6"]}'
    assert read_annotation("garbage") == ({}, frozenset())
