"""gather() and the `node` commands against real BIRD daemons (no BGP peers: static routes only;
the BGP parts are covered on transcripts and, live, by the lab tests)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.bird.errors import BirdUnavailable
from calico_nodestatus.cli.main import cli
from calico_nodestatus.collect.gather import BirdSockets, gather
from tests.bird.daemons import Daemon, available, bird_daemon, static_prefixes

V4 = static_prefixes(30, 4)
V6 = static_prefixes(20, 6)


@pytest.fixture(scope="module")
def bird16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if not available("1.6"):
        pytest.skip("BIRD 1.6.8 is not installed or not root")
    with bird_daemon(tmp_path_factory.mktemp("b16"), "1.6", 4, V4) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def bird2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if not available("2"):
        pytest.skip("BIRD 2 is not installed or not root")
    with bird_daemon(tmp_path_factory.mktemp("b2"), "2", 0, V4 + V6) as daemon:
        yield daemon


async def test_missing_ipv6_daemon_leaves_ipv4_intact(bird16: Daemon, tmp_path: Path) -> None:
    missing = str(tmp_path / "bird6.ctl")
    result = await gather(BirdSockets.from_overrides(bird16.socket, missing), route_limit=10)
    wire = result.status.to_wire()
    assert wire["agent"]["birdV6"] == {"state": "NotReady"}
    assert wire["agent"]["birdV4"]["state"] == "Ready" and wire["agent"]["birdV4"]["version"] == "1.6.8"
    assert len(wire["routes"]["routesV4"]) == 10 and "routesV6" not in wire["routes"]
    assert result.routes_total == {4: 30, 6: 0} and result.routes_truncated[4] == 20
    assert result.route_tallies[4]["Static"].fib == 30
    assert isinstance(result.errors[(6, NodeStatusClass.ROUTES)], BirdUnavailable)
    assert missing in str(result.errors[(6, NodeStatusClass.AGENT)])
    assert not result.failed and (4, NodeStatusClass.AGENT) not in result.errors
    assert result.sockets == {4: bird16.socket, 6: None}
    assert set(result.durations) == set(NodeStatusClass)


async def test_bird2_one_socket_both_families(bird2: Daemon) -> None:
    result = await gather(
        BirdSockets.from_overrides(bird2.socket, "/nonexistent/bird6.ctl"), route_limit=None
    )
    wire = result.status.to_wire()
    assert wire["agent"]["birdV4"]["state"] == wire["agent"]["birdV6"]["state"] == "Ready"
    assert sorted(r["destination"] for r in wire["routes"]["routesV4"]) == sorted(V4)
    assert sorted(r["destination"] for r in wire["routes"]["routesV6"]) == sorted(V6)
    assert result.errors == {}
    assert wire["bgp"]["numberEstablishedV4"] == 0 and "peersV4" not in wire["bgp"]


@pytest.mark.parametrize("enabled", [True, False])
async def test_garbage_collector_state_is_restored(bird2: Daemon, enabled: bool) -> None:
    """The collector is paused while routes stream in; afterwards it is as it was."""
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        result = await gather(BirdSockets.from_overrides(bird2.socket), [NodeStatusClass.ROUTES])
        assert gc.isenabled() is enabled and result.routes_total == {4: len(V4), 6: len(V6)}
    finally:
        (gc.enable if was else gc.disable)()


async def test_only_requested_classes(bird2: Daemon) -> None:
    result = await gather(BirdSockets.from_overrides(bird2.socket), [NodeStatusClass.AGENT])
    wire = result.status.to_wire()
    assert wire["agent"]["birdV4"]["state"] == "Ready"
    assert wire["routes"] == {} and result.routes_total == {4: 0, 6: 0}


def test_node_show_json(bird16: Daemon, tmp_path: Path) -> None:
    args = ["node", "show", "--bird-socket", bird16.socket, "--bird6-socket", str(tmp_path / "none.ctl")]
    out = CliRunner().invoke(cli, [*args, "--classes", "Agent,Routes"])
    assert out.exit_code == 0, out.output
    wire = json.loads(out.stdout)
    assert set(wire) == {"agent", "bgp", "routes"}  # no lastUpdated without --timestamp
    assert wire["agent"]["birdV6"] == {"state": "NotReady"}
    assert len(wire["routes"]["routesV4"]) == 30
    stamped = CliRunner().invoke(cli, [*args, "--timestamp", "-o", "yaml"])
    assert "lastUpdated:" in stamped.stdout and stamped.exit_code == 0
    bad = CliRunner().invoke(cli, [*args, "--classes", "Agent,Nope"])
    assert bad.exit_code == 2 and "unknown class 'Nope'" in bad.output


def test_node_status(bird16: Daemon, tmp_path: Path) -> None:
    none = str(tmp_path / "none.ctl")
    out = CliRunner().invoke(cli, ["node", "status", "--bird-socket", bird16.socket, "--bird6-socket", none])
    assert out.exit_code == 0, out.output
    assert "IPv4 BGP status\nNo IPv4 peers found." in out.stdout
    assert "INFO: BIRDv6 process: 'bird6' is not running." in out.stdout
    down = CliRunner().invoke(
        cli, ["node", "status", "--bird-socket", none, "--bird6-socket", none, "-o", "json"]
    )
    assert down.exit_code == 1
    assert json.loads(down.stdout)["birdRunning"] is False
