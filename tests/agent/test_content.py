"""Status building and change detection on real api models."""

from datetime import UTC, datetime

from calico_nodestatus.agent.content import (
    CollectedSections,
    build_status,
    keep_stable_times,
    rfc3339_now,
    same_content,
)
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
    CalicoNodeRouteType,
    CalicoNodeStatusStatus,
    NodeStatusClass,
)

AGENT = CalicoNodeAgentStatus(
    bird_v4=BGPDaemonStatus(state=BGPDaemonState.READY, router_id="198.18.0.1"),
    bird_v6=BGPDaemonStatus(state=BGPDaemonState.NOT_READY),
)
BGP = CalicoNodeBGPStatus(
    number_established_v4=1,
    peers_v4=[
        CalicoNodePeer(
            peer_ip="198.18.0.2",
            type=BGPPeerType.NODE_MESH,
            state=BGPSessionState.ESTABLISHED,
            since="10:00:00",
        )
    ],
)
ROUTES = CalicoNodeBGPRouteStatus(
    routes_v4=[
        CalicoNodeRoute(type=CalicoNodeRouteType.FIB, destination="198.19.1.0/26", gateway="N/A"),
        CalicoNodeRoute(type=CalicoNodeRouteType.RIB, destination="198.19.2.0/26", gateway="198.18.0.2"),
    ]
)
COLLECTED = CollectedSections(agent=AGENT, bgp=BGP, routes=ROUTES)


def test_requested_classes_filled_others_cleared() -> None:
    status = build_status(COLLECTED, [NodeStatusClass.BGP])
    assert status.bgp == BGP
    assert status.agent == CalicoNodeAgentStatus()
    assert status.routes == CalicoNodeBGPRouteStatus()
    assert status.last_updated is None
    full = build_status(COLLECTED, list(NodeStatusClass))
    assert (full.agent, full.bgp, full.routes) == (AGENT, BGP, ROUTES)


def test_last_updated_and_empty_lists_do_not_count_as_change() -> None:
    status = build_status(COLLECTED, list(NodeStatusClass))
    stamped = status.model_copy(update={"last_updated": datetime(2024, 1, 1, tzinfo=UTC)})
    assert same_content(status.to_wire(), stamped.to_wire())
    wire = status.to_wire()
    wire["bgp"]["peersV6"] = []  # what an upstream populator writes for a family with no peers
    wire["routes"]["routesV6"] = []
    assert same_content(status.to_wire(), wire)
    assert same_content(None, CalicoNodeStatusStatus().to_wire())


def test_route_order_is_not_a_change_but_content_is() -> None:
    status = build_status(COLLECTED, list(NodeStatusClass))
    reordered = status.to_wire()
    reordered["routes"]["routesV4"].reverse()
    assert same_content(status.to_wire(), reordered)
    changed = status.to_wire()
    changed["bgp"]["peersV4"][0]["state"] = "Active"
    assert not same_content(status.to_wire(), changed)


def test_rfc3339_now_is_utc_whole_seconds() -> None:
    assert rfc3339_now(datetime(2024, 5, 1, 12, 0, 0, 987654, tzinfo=UTC)) == datetime(
        2024, 5, 1, 12, tzinfo=UTC
    )


def _with_since(since: str, state: BGPSessionState = BGPSessionState.ESTABLISHED) -> CalicoNodeStatusStatus:
    peer = CalicoNodePeer(peer_ip="2001:db8::2", type=BGPPeerType.NODE_MESH, state=state, since=since)
    return CalicoNodeStatusStatus(bgp=CalicoNodeBGPStatus(number_established_v6=1, peers_v6=[peer]))


def test_since_jitter_of_one_second_keeps_the_stored_value() -> None:
    stored = _with_since("01:23:53")
    assert keep_stable_times(_with_since("01:23:54"), stored).bgp.peers_v6[0].since == "01:23:53"
    assert (
        keep_stable_times(_with_since("00:00:00"), _with_since("23:59:59")).bgp.peers_v6[0].since
        == "23:59:59"
    )
    # Real changes stay: two seconds apart, a new state, or a date.
    assert keep_stable_times(_with_since("01:23:55"), stored).bgp.peers_v6[0].since == "01:23:55"
    moved = keep_stable_times(_with_since("01:23:54", BGPSessionState.ACTIVE), stored)
    assert moved.bgp.peers_v6[0].since == "01:23:54"
    assert (
        keep_stable_times(_with_since("2024-05-01"), _with_since("2024-04-30")).bgp.peers_v6[0].since
        == "2024-05-01"
    )


def _booted(boot: str, state: BGPDaemonState = BGPDaemonState.READY) -> CalicoNodeStatusStatus:
    # The lab's BIRD 1.6 after a restart: its boot time flips between two seconds on every query.
    daemon = BGPDaemonStatus(
        state=state,
        version="1.6.8",
        router_id="198.18.0.3",
        last_boot_time=boot,
        last_reconfiguration_time=boot,
    )
    return CalicoNodeStatusStatus(agent=CalicoNodeAgentStatus(bird_v4=daemon, bird_v6=daemon))


def test_daemon_time_jitter_keeps_the_stored_value() -> None:
    stored = _booted("2026-11-25 01:33:35")
    kept = keep_stable_times(_booted("2026-11-25 01:33:36"), stored)
    assert same_content(kept.to_wire(), stored.to_wire())
    assert kept.agent.bird_v6.last_reconfiguration_time == "2026-11-25 01:33:35"
    across_midnight = keep_stable_times(_booted("2026-11-26 00:00:00"), _booted("2026-11-25 23:59:59"))
    assert across_midnight.agent.bird_v4.last_boot_time == "2026-11-25 23:59:59"
    # A real restart (two seconds on) or another daemon state is a change.
    restarted = keep_stable_times(_booted("2026-11-25 01:33:37"), stored)
    assert restarted.agent.bird_v4.last_boot_time == "2026-11-25 01:33:37"
    not_ready = keep_stable_times(_booted("2026-11-25 01:33:36", BGPDaemonState.NOT_READY), stored)
    assert not_ready.agent.bird_v4.last_boot_time == "2026-11-25 01:33:36"
