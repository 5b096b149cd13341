"""Fixes of upstream gaps (docs/collection-rules.md) whose reverting would go unnoticed elsewhere.

On real BIRD 1.6 and 2 (the shared lab meshes): a disabled peer, which BIRD reports as `Down`, is
`Idle` (A12); a primary route BIRD failed to sync to the kernel (`] !`) is `RIB` (A26). From
replayed real BIRD 1.6.8 transcripts, for what BIRD will not print on demand: `show status`
ending `Reconfiguration in progress` or `Shutdown in progress` is NotReady (A16), and Calico's own
BIRD fork (`BIRD v0.3.3+birdv1.6.8`) is read as BIRD 1 with that version, as in the seed's
read-back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from calico_nodestatus.api import BGPDaemonState, NodeStatusClass
from calico_nodestatus.bird.client import BirdClient
from calico_nodestatus.collect.gather import BirdSockets, gather
from calico_nodestatus.lab import Lab, birdconf
from calico_nodestatus.lab.model import BirdVersion, protocol_name
from tests.collect.test_lab_collection import address, sockets
from tests.faults.replay import replaying

FAMILIES = (4, 6)


def _field(lines: list[str], label: str) -> str | None:
    """The value of `label:` in birdc's `show protocols all` output."""
    for line in lines:
        name, sep, value = line.strip().partition(":")
        if sep and name == label:
            return value.strip()
    return None


async def test_disabled_peer_is_idle_not_an_empty_state(lab_mesh: Lab) -> None:
    """A12: BIRD prints `BGP state: Down` for a disabled protocol; upstream writes no state."""
    lab = lab_mesh
    node, peer = lab.nodes[0], lab.nodes[1]
    names = {family: protocol_name("Mesh", getattr(peer, f"ipv{family}")) for family in FAMILIES}
    try:
        for family, name in names.items():
            lab.birdc(node.index, family, f"disable {name}")
            lab.wait_sessions(
                lambda s: s.state == "down", node_ref=node.index, protocols=[name], family=family,
                what=f"{name} down",
            )  # fmt: skip
            assert _field(lab.birdc(node.index, family, f"show protocols all {name}"), "BGP state") == "Down"
        bgp = (await gather(sockets(node), (NodeStatusClass.BGP,))).status.to_wire()["bgp"]
        for family in FAMILIES:
            states = {p["peerIP"]: p.get("state") for p in bgp[f"peersV{family}"]}
            assert states == {address(peer, family): "Idle", address(lab.nodes[2], family): "Established"}
            assert (bgp[f"numberEstablishedV{family}"], bgp[f"numberNotEstablishedV{family}"]) == (1, 1)
    finally:
        for family, name in names.items():
            lab.birdc(node.index, family, f"enable {name}")
        lab.wait_established(timeout=60.0)


SYNC_FAILS = "198.18.12.0/24"  # outside the lab's extra-route ranges, which never reach the kernel


async def test_primary_route_the_kernel_refused_is_rib(lab_mesh: Lab) -> None:
    """A26: a static route that is BIRD's primary while the kernel already holds an alien route
    for the same prefix and metric: BIRD's netlink add fails (`File exists`) and `show route`
    marks it `] !`. The documented type is RIB (upstream's own rule)."""
    lab = lab_mesh
    node = lab.nodes[0]
    bird2 = node.bird_version is BirdVersion.V2
    metric = "32" if bird2 else "0"  # the metric each BIRD gives the routes it exports
    extra = birdconf.extra_routes_file(node.state.directory, 4)
    saved = extra.read_text()
    alien = ["ip", "route", "add", SYNC_FAILS, "dev", "eth0", "proto", "static", "metric", metric]
    lab.exec(node.index, alien)
    try:
        channel = "  ipv4;\n" if bird2 else ""
        extra.write_text(f"protocol static static_a26 {{\n{channel}  route {SYNC_FAILS} blackhole;\n}}\n")
        lab.birdc(node.index, 4, "configure")
        deadline = time.monotonic() + 30
        while not any(
            line.startswith(SYNC_FAILS) and "[static_a26 " in line and "] !" in line
            for line in lab.birdc(node.index, 4, "show route")
        ):
            assert time.monotonic() < deadline, "BIRD never marked the refused route with '!'"
            await asyncio.sleep(0.2)
        async with await BirdClient.connect(str(node.socket_v4)) as client:
            parsed = [r async for batch in client.routes() for r in batch if r.prefix == SYNC_FAILS]
        refused = next(r for r in parsed if r.protocol == "static_a26")
        assert (refused.primary, refused.sync_error) == (True, True)
        routes = (await gather(sockets(node), (NodeStatusClass.ROUTES,), route_limit=None)).status.routes
        by_source = {
            r.learned_from.source_type: r.type for r in routes.routes_v4 if r.destination == SYNC_FAILS
        }
        # The refused primary and the alien route learned from the kernel (not primary): both RIB.
        assert by_source == {"Static": "RIB", "Kernel": "RIB"}
    finally:
        extra.write_text(saved)
        lab.birdc(node.index, 4, "configure")
        lab.exec(node.index, [*alien[:2], "del", *alien[3:]], check=False)


# -- replayed: what BIRD will not print on demand -----------------------------------------------


@pytest.mark.parametrize(
    ("message", "state"),
    [
        ("Daemon is up and running", BGPDaemonState.READY),
        ("Reconfiguration in progress", BGPDaemonState.NOT_READY),
        ("Shutdown in progress", BGPDaemonState.NOT_READY),
    ],
)
async def test_reconfiguring_or_shutting_down_is_not_ready(
    tmp_path: Path, message: str, state: BGPDaemonState
) -> None:
    """A16: upstream's Ready means "greeting seen"; BIRD's own last `show status` line says more."""
    async with (
        replaying(tmp_path / "bird.ctl") as bird,
        replaying(tmp_path / "bird6.ctl", prefix="bird6__") as bird6,
    ):
        real = bird.replies["show status"]
        assert real.endswith(b"0013 Daemon is up and running\n")
        bird.replies["show status"] = real.replace(b"Daemon is up and running", message.encode())
        result = await gather(
            BirdSockets(v4=(str(bird.path),), v6=(str(bird6.path),)), (NodeStatusClass.AGENT,)
        )
    agent = result.status.agent
    assert result.errors == {}
    assert agent.bird_v4.state is state
    assert (agent.bird_v4.version, agent.bird_v4.router_id) == ("1.6.8", "198.18.0.1")  # still filled
    assert agent.bird_v6.state is BGPDaemonState.READY


FORK = b"v0.3.3+birdv1.6.8"


async def test_calicos_bird_fork_is_bird_1_with_its_version(tmp_path: Path) -> None:
    """Calico's fork greets `BIRD v0.3.3+birdv1.6.8 ready.`: a BIRD 1 (two daemons, one per family)
    whose version, as the seed's read-back shows it, is `v0.3.3+birdv1.6.8`."""
    async with (
        replaying(tmp_path / "bird.ctl") as bird,
        replaying(tmp_path / "bird6.ctl", prefix="bird6__") as bird6,
    ):
        for server in (bird, bird6):
            assert server.greeting == b"0001 BIRD 1.6.8 ready.\n"
            server.greeting = b"0001 BIRD " + FORK + b" ready.\n"
            status = server.replies["show status"]
            server.replies["show status"] = status.replace(b"1000-BIRD 1.6.8", b"1000-BIRD " + FORK)
        async with await BirdClient.connect(str(bird.path)) as client:
            assert client.major_version == 1
        result = await gather(BirdSockets(v4=(str(bird.path),), v6=(str(bird6.path),)))
        assert "show status" in bird6.commands  # the IPv6 daemon was asked: read as BIRD 1
    agent = result.status.agent
    assert result.errors == {}
    for daemon in (agent.bird_v4, agent.bird_v6):
        assert (daemon.state, daemon.version) == (BGPDaemonState.READY, FORK.decode())
    assert result.status.bgp.number_established_v6 == 2
