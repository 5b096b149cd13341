"""The lab on real BIRD 1.6.8 and 2.0.12 daemons in network namespaces, and its fault levers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico_nodestatus.lab import BirdVersion, Lab, LabError, Peer, PeerType
from calico_nodestatus.lab.model import protocol_name
from calico_nodestatus.lab.system import list_namespaces
from tests.plugins.lab import LabFactory

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "calico_nodestatus"]


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.1)


def route_count(lab: Lab, node: int, family: int, protocol: str) -> int:
    lines = lab.birdc(node, family, f"show route protocol {protocol} count")
    match = re.search(r"(\d+) of \d+ routes", " ".join(lines))
    assert match, lines
    return int(match.group(1))


def tcp_connect(lab: Lab, node: int, address: str, timeout: float = 1.0) -> str:
    """A real TCP connect to port 179 from inside the node: 'open', 'refused', or the error."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection((sys.argv[1], 179), timeout={timeout}).close(); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print(type(e).__name__, e)\n"
    )
    return lab.exec(node, [sys.executable, "-c", code, address]).stdout.strip()


def assert_nothing_left(name: str) -> None:
    left = Lab.leftovers(name)
    assert left.empty, left
    assert not [ns for ns in list_namespaces() if ns.startswith(f"cns-{name}-")]


# ---- the shared meshes ---------------------------------------------------------------------


def test_every_mesh_session_is_established_with_calico_names(lab_mesh: Lab) -> None:
    lab_mesh.wait_established(timeout=20)
    for node in lab_mesh.nodes:
        others = [o for o in lab_mesh.nodes if o.index != node.index]
        for family in (4, 6):
            sessions = lab_mesh.sessions(node.index, family)
            expected = {protocol_name("Mesh", o.ipv4 if family == 4 else o.ipv6) for o in others}
            assert set(sessions) == expected
            assert all(s.established for s in sessions.values()), sessions
    node1 = lab_mesh.node(1)
    assert node1.socket_v4.is_socket()
    if lab_mesh.state.bird is BirdVersion.V1_6:
        assert node1.socket_v6 is not None and node1.socket_v6.is_socket()
        assert node1.daemon_for(4).pid() != node1.daemon_for(6).pid()
        assert lab_mesh.birdc(1, 6, "show status")[0] == "BIRD 1.6.8"
    else:
        assert node1.socket_v6 is None
        assert node1.socket_for(6) == node1.socket_v4
        assert lab_mesh.birdc(1, 4, "show status")[0] == "BIRD 2.0.12"


def test_pod_blocks_are_learned_over_the_mesh_and_programmed(lab_mesh: Lab) -> None:
    for family, block, gateway in (
        (4, "198.19.0.64/26", "198.18.0.2"),
        (6, "2001:db8:1::40/122", "2001:db8::2"),
    ):
        peer = protocol_name("Mesh", lab_mesh.node(2).ipv4 if family == 4 else lab_mesh.node(2).ipv6)
        eventually(lambda f=family, p=peer: route_count(lab_mesh, 1, f, p) == 1, what="block route")  # type: ignore[misc]
        text = "\n".join(lab_mesh.birdc(1, family, f"show route protocol {peer}"))
        assert block in text and f"via {gateway}" in text
        # BIRD 2 numbers the second static protocol (the IPv6 one) static2, as in the transcripts.
        static = "static2" if family == 6 and lab_mesh.state.bird is BirdVersion.V2 else "static1"
        own = "\n".join(lab_mesh.birdc(1, family, f"show route protocol {static}"))
        assert ("198.19.0.0/26" if family == 4 else "2001:db8:1::/122") in own and "blackhole" in own
        kernel = lab_mesh.exec(1, ["ip", f"-{family}", "route", "show", block]).stdout
        assert f"via {gateway}" in kernel


def test_exec_runs_inside_the_node_with_its_environment(lab_mesh: Lab) -> None:
    node = lab_mesh.node(3)
    out = lab_mesh.exec(3, ["ip", "-br", "address", "show", "eth0"]).stdout
    assert "198.18.0.3/24" in out and "2001:db8::3/64" in out and "fe80" not in out
    env = dict(line.split("=", 1) for line in lab_mesh.exec(3, ["env"]).stdout.splitlines() if "=" in line)
    assert env["NODENAME"] == node.name
    assert env["CALICO_NODESTATUS_BIRD_SOCKET"] == str(node.socket_v4)


# ---- fault levers on private labs ----------------------------------------------------------


@pytest.mark.parametrize("bird", ["1.6", "2"])
def test_bird_stop_takes_the_peer_session_down(lab_factory: LabFactory, bird: str) -> None:
    lab = lab_factory(nodes=2, bird=bird)
    lab.bird_stop(2, 6 if bird == "1.6" else None)
    lab.wait_sessions(lambda s: not s.established, node_ref=1, family=6, timeout=5, what="v6 session down")
    if bird == "1.6":
        # Only bird6 stopped: the IPv4 daemon and its session are untouched.
        assert lab.bird_running(2, 4) and not lab.bird_running(2, 6)
        assert lab.sessions(1, 4)["Mesh_198_18_0_2"].established
    else:
        assert not lab.bird_running(2, 4)
    lab.bird_start(2)
    lab.wait_established(timeout=15)


def test_block_bgp_filters_port_179_and_unblock_restores(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=3, bird="2")
    lab.block_bgp(1, 2)
    for node, peer in ((1, 2), (2, 1)):
        lab.wait_sessions(
            lambda s: not s.established,
            node_ref=node,
            protocols=[f"Mesh_198_18_0_{peer}", f"Mesh_2001_db8__{peer}"],
            timeout=5,
            what="blocked sessions down",
        )
    assert lab.sessions(1, 4)["Mesh_198_18_0_3"].established
    assert tcp_connect(lab, 1, "198.18.0.2").startswith("TimeoutError")
    assert tcp_connect(lab, 1, "198.18.0.3") == "open"
    assert "198.18.0.2" in lab.exec(1, ["nft", "list", "ruleset"]).stdout
    lab.unblock_bgp(1, 2)
    assert "cns_lab" not in lab.exec(1, ["nft", "list", "ruleset"]).stdout
    lab.wait_established(timeout=15)


@pytest.mark.parametrize("bird", ["1.6", "2"])
def test_extra_routes_reach_the_peers(lab_factory: LabFactory, bird: str) -> None:
    lab = lab_factory(nodes=2, bird=bird, ipv6=False)
    lab.set_routes(2, 1000)
    eventually(
        lambda: route_count(lab, 1, 4, "Mesh_198_18_0_2") == 1001, what="1000 routes + block on node 1"
    )
    # Learned by BIRD but kept out of the kernel, so large tables stay cheap.
    assert lab.exec(1, ["ip", "route", "show", "198.18.16.0/32"]).stdout == ""
    lab.set_routes(2, 0)
    eventually(lambda: route_count(lab, 1, 4, "Mesh_198_18_0_2") == 1, what="routes withdrawn")


def test_second_interface_fault_breaks_the_node_and_undo_heals(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=3, bird="2")
    lab.set_second_interface(3)
    node3 = lab.node(3)
    assert str(node3.ipv4) == "198.18.1.3" and str(node3.ipv6) == "2001:db8:0:1::3"
    assert "198.18.1.3/24" in lab.exec(3, ["ip", "-br", "address", "show", "eth1"]).stdout
    assert "source address 198.18.1.3;" in (node3.directory / "bird.conf").read_text()
    sessions = lab.sessions(1, 4)
    assert set(sessions) == {"Mesh_198_18_0_2", "Mesh_198_18_1_3"}
    time.sleep(3)  # longer than connect delay + retry: the sessions must stay down
    assert not lab.sessions(1, 4)["Mesh_198_18_1_3"].established
    assert not any(s.established for s in lab.sessions(3, 4).values())
    assert lab.sessions(1, 4)["Mesh_198_18_0_2"].established
    lab.set_second_interface(3, enabled=False)
    assert "eth1" not in lab.exec(3, ["ip", "-br", "link"]).stdout
    lab.wait_established(timeout=15)


def test_wrong_local_as_gives_bad_peer_as(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, bird="1.6", ipv6=False)
    lab.set_as(2, 64513)
    eventually(
        lambda: "Bad peer AS" in lab.sessions(1, 4)["Mesh_198_18_0_2"].info, what="Bad peer AS on node 1"
    )
    assert tcp_connect(lab, 1, "198.18.0.2") == "open"


def test_explicit_peers_pointing_nowhere(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, bird="2")
    peers = [
        Peer(type=PeerType.GLOBAL, ip="198.18.250.1", port=8179),
        Peer(type=PeerType.NODE, ip="2001:db8::9", as_number=64600),
    ]
    lab.add_peers(1, peers)
    assert "Global_198_18_250_1_port_8179" in lab.sessions(1, 4)
    assert "Node_2001_db8__9" in lab.sessions(1, 6)
    eventually(
        lambda: "Network is unreachable" in lab.sessions(1, 4)["Global_198_18_250_1_port_8179"].info,
        what="unreachable global peer",
    )
    with pytest.raises(LabError, match="already has"):
        lab.add_peers(1, peers[:1])
    lab.remove_peers(1)
    assert "Global_198_18_250_1_port_8179" not in lab.sessions(1, 4)
    assert lab.sessions(1, 4)["Mesh_198_18_0_2"].established


def test_link_down_and_up(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, bird="2")
    lab.link_down(2)
    assert "Network is unreachable" in tcp_connect(lab, 2, "198.18.0.1")
    lab.link_up(2)
    assert "2001:db8::2/64" in lab.exec(2, ["ip", "-br", "address", "show", "eth0"]).stdout
    assert tcp_connect(lab, 2, "198.18.0.1") == "open"
    lab.wait_established(timeout=15)


# ---- lifecycle and cleanup -----------------------------------------------------------------


def test_down_leaves_nothing_and_is_idempotent(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, bird="1.6")
    before = Lab.leftovers(lab.name)
    assert len(before.namespaces) == 3 and len(before.pids) == 4 and before.directory is not None
    lab.down()
    assert_nothing_left(lab.name)
    lab.down()
    with pytest.raises(LabError, match="is not up"):
        Lab.open(lab.name)


def test_failed_up_cleans_up(lab_name_factory: Callable[[], str]) -> None:
    name = lab_name_factory()
    with pytest.raises(LabError, match="not reached within"):
        Lab.up(name, nodes=2, timeout=0.0)
    assert_nothing_left(name)


def test_lab_of_a_failing_test_is_removed(tmp_path: Path) -> None:
    record = tmp_path / "name"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(
        "def test_fails(lab_factory):\n"
        "    lab = lab_factory(nodes=2)\n"
        f"    open({str(record)!r}, 'w').write(lab.name)\n"
        "    assert False, 'deliberate failure'\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.plugins.lab",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deliberate failure" in result.stdout
    assert_nothing_left(record.read_text())


def test_lab_of_a_killed_owner_is_stale_and_removed(lab_name_factory: Callable[[], str]) -> None:
    name = lab_name_factory()
    script = (
        "import os, sys\n"
        "from calico_nodestatus.lab import Lab\n"
        "Lab.up(sys.argv[1], nodes=1, owner_pid=os.getpid())\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "up\n"
        assert name not in Lab.stale_names()  # its owner is alive
    finally:
        owner.kill()  # dies without tearing down, like a killed test session
        owner.wait()
    assert name in Lab.stale_names()
    subprocess.run([*CLI, "lab", "down", "--all-stale"], capture_output=True, text=True, check=True)
    assert_nothing_left(name)


def test_cli_round_trip(lab_name_factory: Callable[[], str]) -> None:
    name = lab_name_factory()

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "lab", *args], capture_output=True, text=True, check=check, timeout=60)

    up = ["up", "--name", name, "--nodes", "2", "--bird", "1.6", "--no-ipv6"]
    assert "Established" in cli(*up).stdout
    assert cli(*up).returncode == 0  # idempotent
    wrong = cli("up", "--name", name, "--nodes", "3", "--bird", "1.6", "--no-ipv6", check=False)
    assert wrong.returncode == 1 and "already up" in wrong.stderr
    status = json.loads(cli("status", "--name", name, "-o", "json").stdout)
    assert [n["name"] for n in status["nodes"]] == [f"{name}-node-1", f"{name}-node-2"]
    assert status["nodes"][0]["daemons"][0]["sessions_v4"] == {"Mesh_198_18_0_2": "Established"}
    assert "198.18.0.1/24" in cli("exec", "--name", name, "1", "--", "ip", "-br", "addr").stdout
    assert cli("exec", "--name", name, "1", "--", "false", check=False).returncode == 1
    # A node name carries its lab, and `lab exec` hands the node's sockets to the product's
    # commands, so the demo's hints work as printed: no --name, no --bird-socket.
    node_status = cli("exec", f"{name}-node-1", "--", *CLI, "node", "status", check=False)
    assert node_status.returncode == 0, node_status.stderr
    assert "198.18.0.2" in node_status.stdout and "Established" in node_status.stdout
    cli("bird", "stop", f"{name}-node-2")
    assert "NOT RUNNING" in cli("status", "--name", name).stdout
    cli("bird", "start", f"{name}-node-2")
    cli("bird", "stop", "--name", name, "2")
    assert "NOT RUNNING" in cli("status", "--name", name).stdout
    bad = cli("routes", "--name", name, "7", "--count", "5", check=False)
    assert bad.returncode == 1 and "node: '7' is not a node" in bad.stderr
    cli("down", "--name", name)
    cli("down", "--name", name)
    assert_nothing_left(name)
