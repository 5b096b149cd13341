"""calico-node's readiness/liveness decisions over real BIRD transcripts, parsed by the project's parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calico_nodestatus.bird.parse import parse_protocols, parse_status, reply_lines
from calico_nodestatus.bird.types import DaemonStatus, Protocol
from calico_nodestatus.health.bird import (
    bird_uptime,
    evaluate_liveness,
    evaluate_readiness,
    file_age,
    probe_bird,
)

WINDOW = timedelta(seconds=30)


@pytest.fixture
def transcript(bird_fixtures: Path):
    def load(version: str, scenario: str, name: str) -> list[str]:
        return reply_lines((bird_fixtures / version / scenario / f"{name}.txt").read_bytes())

    return load


def protocols(transcript, version: str, scenario: str, name: str) -> list[Protocol]:
    return parse_protocols(transcript(version, scenario, name))


def status(transcript, version: str, scenario: str, name: str) -> DaemonStatus:
    return parse_status(transcript(version, scenario, name))


def ready(family: int, rows: list[Protocol], st: DaemonStatus, threshold: timedelta = WINDOW):
    return evaluate_readiness(
        family,
        rows,
        elapsed=bird_uptime(st),
        threshold=threshold,
        graceful_restart=st.graceful_restart is not None,
    )


def test_inside_the_window_every_peer_must_be_established(transcript) -> None:
    # 3 s after a BIRD restart: two mesh peers are back, 198.18.0.9 is still connecting.
    v4 = ready(
        4,
        protocols(transcript, "1.6.8", "gr", "c03_3s_after_restart__show_protocols"),
        status(transcript, "1.6.8", "gr", "c03_3s_after_restart__show_status"),
    )
    assert not v4.ok
    assert v4.message == "calico/node is not ready: BIRD is not ready: BGP not established with 198.18.0.9"
    assert v4.details["withinStartupWindow"] is True
    assert v4.details["elapsedSeconds"] == 3.0
    assert v4.details["notEstablished"] == [
        {
            "peerIP": "198.18.0.9",
            "port": None,
            "protocol": "Mesh_198_18_0_9",
            "state": "Connect",
            "info": "Connect",
        }
    ]
    v6 = ready(
        6,
        protocols(transcript, "1.6.8", "gr", "c03_3s_after_restart__bird6__show_protocols"),
        status(transcript, "1.6.8", "gr", "c03_3s_after_restart__bird6__show_status"),
    )
    assert v6.message == "calico/node is not ready: BIRD6 is not ready: BGP not established with 2001:db8::9"


def test_after_the_window_one_established_peer_suffices(transcript) -> None:
    # Exactly 30 s after the restart: the window (elapsed < threshold) is over.
    result = ready(
        4,
        protocols(transcript, "1.6.8", "gr", "c07_30s_after_restart__show_protocols"),
        status(transcript, "1.6.8", "gr", "c07_30s_after_restart__show_status"),
    )
    assert result.ok
    assert result.check == "bird-ready"
    assert result.message == (
        "BIRD is ready: BGP established with 2 of 3 peers "
        "(start-up window passed; not established: 198.18.0.9)"
    )
    # The same state with a longer window is still not ready.
    longer = ready(
        4,
        protocols(transcript, "1.6.8", "gr", "c07_30s_after_restart__show_protocols"),
        status(transcript, "1.6.8", "gr", "c07_30s_after_restart__show_status"),
        threshold=timedelta(seconds=60),
    )
    assert not longer.ok


def test_no_established_peer_lists_every_peer_in_bird_order(transcript) -> None:
    rows = protocols(transcript, "1.6.8", "peerdown", "t3_10s_after_stop__show_protocols")
    result = evaluate_readiness(4, rows, elapsed=timedelta(hours=1), threshold=WINDOW, graceful_restart=False)
    assert result.message == (
        "calico/node is not ready: BIRD is not ready: "
        "BGP not established with 198.18.0.2,198.18.0.3,198.18.0.4,198.18.0.9,198.18.250.1"
    )
    infos = {p["peerIP"]: p["info"] for p in result.details["notEstablished"]}
    assert infos["198.18.0.4"] == "Idle BGP Error: Bad peer AS"
    assert infos["198.18.250.1"] == "Active Socket: Network is unreachable"


def test_partly_established_inside_and_after_the_window(transcript) -> None:
    rows = protocols(transcript, "1.6.8", "peerdown", "t0_before__bird6__show_protocols")
    inside = evaluate_readiness(
        6, rows, elapsed=timedelta(seconds=5), threshold=WINDOW, graceful_restart=False
    )
    assert inside.message == (
        "calico/node is not ready: BIRD6 is not ready: "
        "BGP not established with 2001:db8::4,2001:db8::9,2001:db8:250::1"
    )
    after = evaluate_readiness(
        6, rows, elapsed=timedelta(seconds=31), threshold=WINDOW, graceful_restart=False
    )
    assert after.ok and after.details["established"] == 2 and after.details["peers"] == 5


def test_graceful_restart_blocks_readiness_only_inside_the_window(transcript) -> None:
    rows = protocols(transcript, "1.6.8", "mesh3", "show_protocols")
    recovering = status(transcript, "1.6.8", "gr", "c03_3s_after_restart__show_status")
    inside = ready(4, rows, recovering)
    assert inside.message == "calico/node is not ready: BIRD is not ready: graceful restart in progress"
    after = ready(4, rows, recovering, threshold=timedelta(seconds=2))
    assert after.ok and after.message == "BIRD is ready: BGP established with 2 of 2 peers"
    healthy = ready(4, rows, status(transcript, "1.6.8", "mesh3", "show_status"))
    assert healthy.ok


def test_bird2_one_socket_serves_both_families(transcript) -> None:
    rows = protocols(transcript, "2.0.12", "mesh3", "show_protocols")
    st = status(transcript, "2.0.12", "mesh3", "show_status")
    assert bird_uptime(st) == timedelta(seconds=8, milliseconds=150)
    v4, v6 = ready(4, rows, st), ready(6, rows, st)
    assert (v4.details["peers"], v6.details["peers"]) == (2, 2)
    assert v4.ok and v6.ok
    assert v6.check == "bird6-ready"


def test_no_bgp_peers_is_ready(transcript) -> None:
    rows = [p for p in protocols(transcript, "1.6.8", "mesh3", "show_protocols") if p.proto != "BGP"]
    assert rows, "the transcript has kernel/device/direct/static rows"
    result = evaluate_readiness(4, rows, elapsed=timedelta(0), threshold=WINDOW, graceful_restart=True)
    assert result.ok and result.message == "BIRD is ready: no BGP peers"


def test_port_suffixed_peers_report_the_real_ip_and_other_rows_are_ignored() -> None:
    rows = [
        Protocol(
            "Node_198_18_0_5_port_8179",
            "BGP",
            "master",
            "start",
            "00:00:01",
            "Active Socket: Connection refused",
        ),
        Protocol("Global_2001_db8__7_port_1179", "BGP", "master", "start", "00:00:01", "Connect"),
        Protocol("Local_Workload_198_18_0_77", "BGP", "master", "start", "00:00:01", "Active"),
        Protocol("Mesh_198_18_0_6", "BGP", "master", "down", "00:00:01", ""),
        Protocol("custom_peer", "BGP", "master", "start", "00:00:01", "Active"),
    ]
    result = evaluate_readiness(4, rows, elapsed=timedelta(hours=1), threshold=WINDOW, graceful_restart=False)
    assert (
        result.message == "calico/node is not ready: BIRD is not ready: BGP not established with 198.18.0.5"
    )
    assert result.details["notEstablished"][0]["port"] == 8179
    v6 = evaluate_readiness(6, rows, elapsed=timedelta(hours=1), threshold=WINDOW, graceful_restart=False)
    assert v6.message.endswith("BGP not established with 2001:db8::7")


def test_liveness(transcript) -> None:
    live = evaluate_liveness(6, status(transcript, "1.6.8", "mesh3", "bird6__show_status"), None)
    assert live.ok and live.check == "bird6-live"
    assert live.message == "bird6 is live: BIRD 1.6.8: Daemon is up and running"


async def test_probe_without_a_socket_fails_both_checks_with_the_socket_error(tmp_path: Path) -> None:
    path = tmp_path / "bird.ctl"
    live, ready_ = await probe_bird(4, ready=True, live=True, threshold=WINDOW, socket_path=str(path))
    assert (live.check, live.ok, ready_.check, ready_.ok) == ("bird-live", False, "bird-ready", False)
    assert live.message == (
        f"calico/node is not ready: bird is not live: unable to connect to BIRD socket {path}: "
        "No such file or directory"
    )
    assert ready_.message == (
        f"calico/node is not ready: BIRD is not ready: error querying BIRD: unable to connect to BIRD socket "
        f"{path}: No such file or directory"
    )


def test_upstream_window_clock_from_a_file(tmp_path: Path) -> None:
    nodename = tmp_path / "nodename"
    nodename.write_text("node-1")
    now = datetime.fromtimestamp(nodename.stat().st_mtime, tz=UTC) + timedelta(seconds=12)
    assert file_age(nodename, now) == timedelta(seconds=12)
    with pytest.raises(ValueError, match=r"failed to stat\(\) nodename file: stat .*/absent: No such file"):
        file_age(tmp_path / "absent", now)
