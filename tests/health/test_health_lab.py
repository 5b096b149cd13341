"""Readiness and liveness against real BIRD 1.6 daemons (v4 + v6) in the lab, with its fault levers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico_nodestatus.cli.main import cli
from calico_nodestatus.lab import Lab, Peer, PeerType

pytestmark = pytest.mark.lab

CLI = str(Path(sys.executable).parent / "calico-nodestatus")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # The default lab root and an owner pid: other sessions' stale-lab cleanup then leaves it alone.
    lab = Lab.up("healthlab", nodes=3, bird="1.6", ipv6=True, owner_pid=os.getpid())
    try:
        yield lab
    finally:
        lab.down()


def health(lab: Lab, node: int, *args: str) -> tuple[int, list[str]]:
    """`calico-nodestatus health` in-process, pointed at the node's sockets."""
    sockets = [
        "--bird-socket",
        str(lab.node(node).socket_v4),
        "--bird6-socket",
        str(lab.node(node).socket_v6),
    ]
    result = CliRunner().invoke(cli, ["health", *sockets, *args], catch_exceptions=False)
    return result.exit_code, result.output.splitlines()


def not_established(lab: Lab, node: int, peer: int) -> None:
    names = [
        f"Mesh_{str(lab.node(peer).ipv4).replace('.', '_')}",
        f"Mesh_{str(lab.node(peer).ipv6).replace(':', '_')}",
    ]
    lab.wait_sessions(
        lambda s: not s.established, node_ref=node, protocols=names, timeout=15, what="session down"
    )


def test_healthy_node_is_ready_and_live_inside_its_namespace(lab: Lab) -> None:
    # As a probe runs it: inside the node, sockets found through the node's environment.
    result = lab.exec(
        1, [CLI, "health", "--bird-ready", "--bird6-ready", "--bird-live", "--bird6-live"], check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "bird is live: BIRD 1.6.8: Daemon is up and running"
    assert "BIRD is ready: BGP established with 2 of 2 peers" in lines
    assert "BIRD6 is ready: BGP established with 2 of 2 peers" in lines


def test_stopped_bird_fails_liveness_with_the_socket_error(lab: Lab) -> None:
    socket = lab.node(2).socket_v4
    lab.bird_stop(2, 4)
    try:
        code, lines = health(lab, 2, "--bird-live", "--bird6-live", "--bird-ready")
        assert code == 1
        # BIRD removes its socket on a clean stop; the reason is the real connect error.
        assert lines == [
            f"calico/node is not ready: bird is not live: unable to connect to BIRD socket {socket}: "
            "No such file or directory",
            "calico/node is not ready: BIRD is not ready: error querying BIRD: "
            f"unable to connect to BIRD socket {socket}: No such file or directory",
            "bird6 is live: BIRD 1.6.8: Daemon is up and running",  # the IPv6 daemon is untouched
        ]
    finally:
        lab.bird_start(2, 4)
        lab.wait_established(node_ref=2)


def test_port_suffixed_peer_is_reported_by_its_ip(lab: Lab) -> None:
    lab.add_peers(3, [Peer(type=PeerType.NODE, ip="198.18.0.77", port=8179)])
    try:
        code, lines = health(lab, 3, "--bird-ready", "--threshold-time", "1h")
        assert code == 1
        assert lines[0] == "calico/node is not ready: BIRD is not ready: BGP not established with 198.18.0.77"
        assert lines[1].startswith("  198.18.0.77 (Node_198_18_0_77_port_8179): ")
    finally:
        lab.remove_peers(3)


def test_blocked_bgp_fails_readiness_with_the_peer_ips(lab: Lab) -> None:
    n2, n3 = lab.node(2), lab.node(3)
    lab.block_bgp(1, 2)
    try:
        not_established(lab, 1, 2)
        # Inside the start-up window every peer counts.
        code, lines = health(lab, 1, "--bird-ready", "--bird6-ready", "--threshold-time", "1h")
        assert code == 1
        assert lines[0] == f"calico/node is not ready: BIRD is not ready: BGP not established with {n2.ipv4}"
        assert f"calico/node is not ready: BIRD6 is not ready: BGP not established with {n2.ipv6}" in lines
        # After it, the remaining Established peer (node 3) is enough.
        code, lines = health(lab, 1, "--bird-ready", "--threshold-time", "0s")
        assert code == 0
        assert lines == [
            f"BIRD is ready: BGP established with 1 of 2 peers (start-up window passed; "
            f"not established: {n2.ipv4})"
        ]
        lab.block_bgp(1, 3)
        not_established(lab, 1, 3)
        code, lines = health(lab, 1, "--bird-ready", "--threshold-time", "0s", "-o", "json")
        assert code == 1
        assert f"BGP not established with {n2.ipv4},{n3.ipv4}" in "\n".join(lines)
    finally:
        lab.unblock_bgp(1, 2)
        lab.unblock_bgp(1, 3)
        lab.wait_established(node_ref=1)
