"""Collection on a live 3-node BIRD mesh (issue 3, "Done when"), for BIRD 1.6 and BIRD 2, IPv4 and
IPv6: peers, routes learned over BGP, a stopped peer, a stopped IPv6 daemon, and `node status`.

The labs are the session-wide `lab_mesh*` fixtures (tests/plugins/lab.py); a test that stops a
daemon starts it again and waits for the mesh to be Established before it returns."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.collect.gather import BirdSockets, CollectionResult, gather
from calico_nodestatus.lab import Lab
from calico_nodestatus.lab.lab import LabNode
from calico_nodestatus.lab.model import protocol_name

CONSOLE_SCRIPT = Path(sys.executable).with_name("calico-nodestatus")
FAMILIES = (4, 6)


def sockets(node: LabNode) -> BirdSockets:
    # BIRD 2 serves both families on bird.ctl; a BIRD 1.6 node has bird6.ctl besides.
    v6 = node.socket_v6
    return BirdSockets.from_overrides(str(node.socket_v4), str(v6) if v6 else None)


def address(node: LabNode, family: int) -> str:
    return str(node.ipv4 if family == 4 else node.ipv6)


def block(node: LabNode, family: int) -> str:
    return str(node.state.block_v4 if family == 4 else node.state.block_v6)


async def collect(node: LabNode) -> tuple[CollectionResult, dict[str, Any]]:
    result = await gather(sockets(node), route_limit=None)
    return result, result.status.to_wire()


@pytest.fixture
def restore_mesh(lab_mesh: Lab) -> Iterator[Lab]:
    """The shared lab, with every daemon running and every Mesh session Established afterwards."""
    try:
        yield lab_mesh
    finally:
        for node in lab_mesh.nodes:
            lab_mesh.bird_start(node.index)
        lab_mesh.wait_established(timeout=60.0)


async def test_every_node_reports_its_mesh_peers_and_routes(lab_mesh: Lab) -> None:
    for node in lab_mesh.nodes:
        others = [n for n in lab_mesh.nodes if n.index != node.index]
        result, wire = await collect(node)
        assert result.errors == {}, result.errors
        for family in FAMILIES:
            assert wire["agent"][f"birdV{family}"]["state"] == "Ready"
            assert wire["bgp"][f"numberEstablishedV{family}"] == 2
            assert wire["bgp"].get(f"numberNotEstablishedV{family}", 0) == 0
            peers = wire["bgp"][f"peersV{family}"]
            assert sorted(p["peerIP"] for p in peers) == sorted(address(o, family) for o in others)
            assert {(p["type"], p["state"]) for p in peers} == {("NodeMesh", "Established")}

            routes = {r["destination"]: r for r in wire["routes"][f"routesV{family}"]}
            for other in others:
                learned = routes[block(other, family)]
                assert learned["type"] == "FIB"
                assert learned["gateway"] == address(other, family)
                assert learned["interface"] == "eth0"
                assert learned["learnedFrom"] == {"sourceType": "NodeMesh", "peerIP": address(other, family)}
            assert routes[block(node, family)] == {
                "type": "FIB",
                "destination": block(node, family),
                "gateway": "N/A",
                "interface": "blackhole",
                "learnedFrom": {"sourceType": "Static"},
            }
            # Counted as the metrics see them: two blocks from the mesh, one's own block static.
            tallies = result.route_tallies[family]
            assert tallies["NodeMesh"].fib == 2 and tallies["Static"].fib >= 1


async def _peer_state(node: LabNode, family: int, peer_ip: str) -> str | None:
    result = await gather(sockets(node), (NodeStatusClass.BGP,))
    peers = result.status.to_wire()["bgp"].get(f"peersV{family}", [])
    return next((p.get("state") for p in peers if p["peerIP"] == peer_ip), None)


async def test_stopped_peer_is_not_established(restore_mesh: Lab) -> None:
    lab = restore_mesh
    observer, stopped, other = lab.nodes
    lab.bird_stop(stopped.index)
    for family in FAMILIES:
        deadline = time.monotonic() + 10.0
        while (state := await _peer_state(observer, family, address(stopped, family))) == "Established":
            assert time.monotonic() < deadline, f"IPv{family} session still Established after stop"
            await asyncio.sleep(0.1)
        assert state is not None  # still listed: the protocol exists, its session is down
        assert await _peer_state(observer, family, address(other, family)) == "Established"
        wire = (await gather(sockets(observer), (NodeStatusClass.BGP,))).status.to_wire()["bgp"]
        assert wire[f"numberEstablishedV{family}"] == 1 and wire[f"numberNotEstablishedV{family}"] == 1


async def test_disabled_peer_is_idle(restore_mesh: Lab) -> None:
    """A BGP protocol disabled in BIRD has no session at all: BIRD says `BGP state: Down`, which
    the API has no word for; it is the BGP FSM's Idle."""
    lab = restore_mesh
    observer, peer = lab.nodes[0], lab.nodes[1]
    names = {family: protocol_name("Mesh", peer.ipv4 if family == 4 else peer.ipv6) for family in FAMILIES}
    try:
        for family, name in names.items():
            lab.birdc(observer.index, family, f"disable {name}")
        for family, name in names.items():
            detail = lab.birdc(observer.index, family, f"show protocols all {name}")
            assert ["BGP", "state:", "Down"] in [line.split() for line in detail], detail
            assert await _peer_state(observer, family, address(peer, family)) == "Idle"
    finally:
        for family, name in names.items():
            lab.birdc(observer.index, family, f"enable {name}")


def _in_node(lab: Lab, node: LabNode, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, run inside the node's network namespace."""
    options = ["--bird-socket", str(node.socket_v4)]
    if node.socket_v6 is not None:
        options += ["--bird6-socket", str(node.socket_v6)]
    return lab.exec(node.index, [str(CONSOLE_SCRIPT), "node", *args, *options], check=False)


def _same_to_the_second(left: object, right: object) -> bool:
    """Equal, except that times may differ by one second: BIRD 1.6 prints its boot and session
    times as monotonic seconds plus the current wall-clock offset, so two readings of one fixed
    instant can straddle a second boundary."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same_to_the_second(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same_to_the_second, left, right))
    if isinstance(left, str) and isinstance(right, str) and left != right:
        for form in ("%Y-%m-%d %H:%M:%S", "%H:%M:%S"):
            try:
                gap = datetime.strptime(left, form) - datetime.strptime(right, form)
            except ValueError:
                continue
            return abs(gap.total_seconds()) <= 1
    return left == right


def test_node_show_with_ipv6_daemon_stopped_keeps_ipv4(lab_mesh_bird16: Lab) -> None:
    lab = lab_mesh_bird16
    node = lab.nodes[0]
    before = json.loads(_in_node(lab, node, "show", "-o", "json").stdout)
    lab.bird_stop(node.index, 6)
    try:
        shown = _in_node(lab, node, "show", "-o", "json")
    finally:
        lab.bird_start(node.index, 6)
        lab.wait_established(timeout=60.0)
    assert shown.returncode == 0, shown.stderr
    after = json.loads(shown.stdout)
    assert after["agent"]["birdV6"] == {"state": "NotReady"}
    assert _same_to_the_second(after["agent"]["birdV4"], before["agent"]["birdV4"])
    assert after["agent"]["birdV4"]["state"] == "Ready"
    # Every IPv4 field as before (session `since` times included); nothing IPv6 left.
    for key in ("numberEstablishedV4", "numberNotEstablishedV4", "peersV4"):
        assert _same_to_the_second(after["bgp"].get(key), before["bgp"].get(key)), key
    assert after["bgp"]["numberEstablishedV4"] == 2
    assert "peersV6" not in after["bgp"] and "routesV6" not in after["routes"]
    assert after["routes"]["routesV4"] == before["routes"]["routesV4"]
    assert len(before["routes"]["routesV6"]) >= 3


def test_node_status_table_lists_the_peers(lab_mesh: Lab) -> None:
    node = lab_mesh.nodes[0]
    shown = _in_node(lab_mesh, node, "status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "IPv4 BGP status" in text and "IPv6 BGP status" in text
    assert "| PEER ADDRESS | PEER TYPE" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "PEER ADDRESS" not in line]
    peers = {cells[0]: cells for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}
    expected = {address(o, f) for o in lab_mesh.nodes[1:] for f in FAMILIES}
    assert set(peers) == expected
    for cells in peers.values():
        assert cells[1:3] == ["node-to-node mesh", "up"] and cells[4] == "Established"
        ipaddress.ip_address(cells[0])
