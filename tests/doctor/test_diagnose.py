"""The pure diagnosis over evidence built from real BIRD transcripts and hand-made interfaces
(faults the lab cannot stage on demand: an unreachable-but-refusing host, duplicate router IDs)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.bird.parse import parse_protocols_all, parse_status
from calico_nodestatus.doctor import Evidence, Verdict, diagnose
from calico_nodestatus.doctor.model import (
    AddressEvidence,
    ConnectOutcome,
    ConnectProbe,
    DaemonEvidence,
    DatastoreEvidence,
    PeerEvidence,
)
from calico_nodestatus.health.autodetect import HostInterface, RouteLookup

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _evidence(
    bird_fixtures: Path, *, probe: ConnectOutcome, statuses: tuple[CalicoNodeStatus, ...] = ()
) -> Evidence:
    """Node 1 of the peerdown scenario: the session to 2001:db8::4 fails with `Bad peer AS`."""
    scenario = bird_fixtures / "2.0.12" / "peerdown"
    status = parse_status(_lines(scenario / "show_status.txt"))
    details = parse_protocols_all(_lines(scenario / "t0_before__show_protocols_all_Mesh_2001_db8__4.txt"))[0]
    eth0 = HostInterface("eth0", 2, True, (ipaddress.ip_interface("2001:db8::1/64"),))
    route = RouteLookup(
        ipaddress.ip_address("2001:db8::4"), ipaddress.ip_address("2001:db8::1"), "eth0", None
    )
    peer = PeerEvidence(
        family=6,
        ip="2001:db8::4",
        port=179,
        details=details,
        probe=ConnectProbe("2001:db8::4", 179, probe, str(probe), 0.01, 2.0),
        route=route,
    )
    daemon = DaemonEvidence(
        family=4, candidates=("bird.ctl",), explicit=True, socket="bird.ctl", status=status
    )
    return Evidence(
        node="node-1",
        daemons={4: daemon},
        peers=(peer,),
        address=AddressEvidence(method="", interfaces=(eth0,), routes={"2001:db8::4": route}),
        datastore=DatastoreEvidence(configured=True, description="embedded x", now=NOW, statuses=statuses),
    )


def test_reachable_port_with_bad_peer_as_quotes_bird(bird_fixtures: Path) -> None:
    report = diagnose(_evidence(bird_fixtures, probe=ConnectOutcome.CONNECTED))
    session = next(c for c in report.checks if c.check == "bgp-session")
    assert session.verdict is Verdict.FAIL
    assert "reachable" in session.summary and "AS number mismatch" in session.summary
    assert 'BIRD says: "BGP Error: Bad peer AS"' in session.summary
    assert report.exit_code == 1


def test_refused_port_is_not_blamed_on_as(bird_fixtures: Path) -> None:
    report = diagnose(_evidence(bird_fixtures, probe=ConnectOutcome.REFUSED))
    session = next(c for c in report.checks if c.check == "bgp-session")
    assert "refuses TCP port 179" in session.summary
    assert "AS" not in session.summary


def test_duplicate_router_id_across_nodes(bird_fixtures: Path) -> None:
    evidence = _evidence(bird_fixtures, probe=ConnectOutcome.CONNECTED)
    own_router_id = evidence.daemons[4].status.router_id  # type: ignore[union-attr]
    other = CalicoNodeStatus.from_wire(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "CalicoNodeStatus",
            "metadata": {"name": "node-9"},
            "spec": {"node": "node-9", "classes": ["Agent"], "updatePeriodSeconds": 10},
            "status": {"agent": {"birdV4": {"state": "Ready", "routerID": own_router_id}}},
        }
    )
    report = diagnose(_evidence(bird_fixtures, probe=ConnectOutcome.CONNECTED, statuses=(other,)))
    duplicates = next(c for c in report.checks if c.check == "duplicates")
    assert duplicates.verdict is Verdict.FAIL
    assert f"router ID {own_router_id} is used by node-1, node-9" in duplicates.summary


def test_exit_code_is_2_for_warnings_only(bird_fixtures: Path) -> None:
    evidence = _evidence(bird_fixtures, probe=ConnectOutcome.CONNECTED)
    healthy = Evidence(
        node=evidence.node,
        daemons=evidence.daemons,
        peers=(),
        address=evidence.address,
        datastore=DatastoreEvidence(configured=False, description="embedded x (absent)", now=NOW),
    )
    report = diagnose(healthy)
    assert [c.verdict for c in report.checks if c.verdict is not Verdict.OK] == [Verdict.WARN]
    assert report.exit_code == 2
