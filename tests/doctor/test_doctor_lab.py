"""The doctor on a real BIRD lab: each fault lever, then the real console script inside a node's
network namespace, judged by its JSON report and exit code.

One IPv4 BIRD 2 lab (3 nodes) serves the module; every test undoes its fault and waits for the
mesh to be Established again, so the tests do not depend on their order.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.health.autodetect import autodetect, parse_method
from calico_nodestatus.lab import Lab
from tests.plugins.lab import unique_lab_name

pytestmark = [pytest.mark.lab]

CLI = str(Path(sys.executable).parent / "calico-nodestatus")
Report = dict[str, Any]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the BIRD lab needs root (network namespaces)")
    # "dr" marks the doctor's labs; the rest keeps the name unique per process and call.
    built = Lab.up("dr" + unique_lab_name()[1:], nodes=3, bird="2", ipv6=False, owner_pid=os.getpid())
    try:
        built.wait_established(timeout=30)
        yield built
    finally:
        built.down()


def doctor(lab: Lab, node: int, *global_options: str) -> tuple[int, Report]:
    result = lab.exec(node, [CLI, *global_options, "doctor", "-o", "json"], check=False)
    assert result.returncode in (0, 1, 2), result.stderr
    report = json.loads(result.stdout)
    assert report["exitCode"] == result.returncode
    return result.returncode, report


def doctor_until(lab: Lab, node: int, done: Callable[[Report], bool], timeout: float = 20.0) -> Report:
    """BGP state moves on its own timers: re-run the doctor until the fault shows (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        _, report = doctor(lab, node)
        if done(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def checks(report: Report, name: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["check"] == name]


def session(report: Report, peer_ip: str) -> dict[str, Any] | None:
    return next((c for c in checks(report, "bgp-session") if c["details"]["peerIP"] == peer_ip), None)


def test_healthy_node_exits_0(lab: Lab, tmp_path: Path) -> None:
    db = tmp_path / "store.db"

    async def agent_heartbeat() -> None:
        async with EmbeddedDatastore(db) as store:
            await store.renew_liveness(lab.node(1).name, "test-agent", 60)

    asyncio.run(agent_heartbeat())
    code, report = doctor(lab, 1, "--db", str(db))
    assert code == 0, report
    assert {c["verdict"] for c in report["checks"]} == {"ok"}
    assert "2 of 2 BGP sessions Established" in checks(report, "bgp-sessions")[0]["summary"]
    assert "liveness renewed" in checks(report, "datastore")[0]["summary"]


def test_block_bgp_is_reported_as_filtered_port(lab: Lab) -> None:
    peer_ip = str(lab.node(2).ipv4)
    lab.block_bgp(1, 2)
    try:
        report = doctor_until(lab, 1, lambda r: session(r, peer_ip) is not None)
        found = session(report, peer_ip)
        assert found is not None, report
        assert found["verdict"] == "fail"
        assert found["details"]["tcpConnect"] in ("timeout", "blocked")
        assert (
            f"TCP port 179 on {peer_ip} is filtered" in found["summary"]
            or "filtered by this node" in (found["summary"])
        )
        assert "allow TCP port 179" in found["remedy"]
        assert report["exitCode"] == 1
        # The unblocked peer is untouched.
        assert session(report, str(lab.node(3).ipv4)) is None
    finally:
        lab.unblock_bgp(1, 2)
        lab.wait_established(timeout=30)


def test_wrong_interface_gets_a_verified_autodetection_method(lab: Lab) -> None:
    node = lab.node(2)
    lab.set_second_interface(2)
    try:
        report = doctor_until(lab, 2, lambda r: any(c["verdict"] == "fail" for c in checks(r, "bgp-address")))
        address = checks(report, "bgp-address")[0]
        assert address["verdict"] == "fail", report
        assert f"BIRD peers from {node.state.eth1_ipv4} on eth1" in address["summary"]
        assert "reached via eth0" in address["summary"]
        assert "first-found picked the wrong interface" in address["summary"]
        suggested = address["details"]["suggestedMethods"]
        assert suggested[0] == "interface=^eth0$"
        assert "IP_AUTODETECTION_METHOD=interface=^eth0$" in address["remedy"]
        # Independently of the doctor: every suggestion picks eth0's address on the node.
        for method in suggested:
            detection = autodetect(parse_method(method), 4, netns=node.namespace)
            assert detection.address is not None
            assert detection.address.ip == node.state.eth0_ipv4, method
        assert report["exitCode"] == 1
    finally:
        lab.set_second_interface(2, enabled=False)
        lab.wait_established(timeout=30)


def test_bird_stopped_is_reported_not_running(lab: Lab) -> None:
    lab.bird_stop(1)
    try:
        code, report = doctor(lab, 1)
        bird = next(c for c in checks(report, "bird-socket") if c["subject"] == "IPv4")
        assert bird["verdict"] == "fail"
        assert "BIRD is not running" in bird["summary"]
        socket = str(lab.node(1).socket_v4)
        assert any(socket in line for line in bird["evidence"])
        assert code == 1
    finally:
        lab.bird_start(1)
        lab.wait_established(timeout=30)


def test_wrong_as_quotes_bird_and_says_port_reachable(lab: Lab) -> None:
    peer_ip = str(lab.node(3).ipv4)
    lab.set_as(3, 64999)

    def bad_as(report: Report) -> bool:
        found = session(report, peer_ip)
        return found is not None and "Bad peer AS" in (found["details"]["birdError"] or "")

    try:
        report = doctor_until(lab, 1, bad_as)
        found = session(report, peer_ip)
        assert found is not None and bad_as(report), report
        assert found["details"]["tcpConnect"] == "connected"
        assert f"TCP port 179 on {peer_ip} is reachable" in found["summary"]
        assert 'BIRD says: "BGP Error: Bad peer AS"' in found["summary"]
        assert "AS number mismatch" in found["summary"]
        assert report["exitCode"] == 1
    finally:
        lab.set_as(3, 64512)
        lab.wait_established(timeout=30)
