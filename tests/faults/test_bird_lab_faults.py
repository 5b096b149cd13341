"""Real BIRD 1.6 daemons (bird + bird6, like calico-node) with a 20,000-route IPv4 table:
killed during a collection, restarted, reconfigured in the middle of `show route` (`8004`).
The relay (tests/faults/relay.py) passes the daemon's real bytes and only picks the moment."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api import BGPDaemonState, NodeStatusClass
from calico_nodestatus.bird.errors import BirdProtocolError, BirdReconfigurationInterrupt
from calico_nodestatus.collect.gather import ALL_CLASSES, BirdSockets, CollectionResult, gather
from tests.faults.relay import pausing_relay
from tests.plugins.lab import built_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

EXTRA_ROUTES = 20_000
ROUTES = NodeStatusClass.ROUTES


@pytest.fixture(scope="module")
def big_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One lab node running bird and bird6, its IPv4 BIRD holding 20,000 extra static routes."""
    with built_lab("1.6", nodes=1, ipv6=True) as lab:
        lab.set_routes(1, EXTRA_ROUTES)
        yield lab


@pytest.fixture
def lab(big_node: Any) -> Iterator[Any]:
    yield big_node
    big_node.bird_start(1)  # whatever a test stopped


async def _gather(v4: Path, v6: Path) -> CollectionResult:
    return await gather(BirdSockets(v4=(str(v4),), v6=(str(v6),)), ALL_CLASSES, route_limit=None)


async def _complete(lab: Any) -> CollectionResult:
    node = lab.node(1)
    result = await _gather(node.socket_v4, node.socket_v6)
    assert result.errors == {}
    assert result.routes_total[4] >= EXTRA_ROUTES
    assert result.status.agent.bird_v4.state is BGPDaemonState.READY
    return result


async def test_killed_during_show_route(lab: Any, tmp_path: Path) -> None:
    node = lab.node(1)

    def kill() -> None:
        lab.bird_stop(1, 4, sig=signal.SIGKILL)

    async with pausing_relay(tmp_path / "bird.ctl", node.socket_v4, kill) as relay:
        result = await _gather(relay.path, node.socket_v6)
    assert relay.fired == 1
    assert set(result.errors) == {(4, ROUTES)}
    assert isinstance(result.errors[(4, ROUTES)], BirdProtocolError)
    assert result.status.routes.routes_v4 == []  # a cut table is not reported as the table
    # What was read before the kill, and the other family, are intact.
    assert result.status.agent.bird_v4.state is BGPDaemonState.READY
    assert result.status.agent.bird_v6.state is BGPDaemonState.READY
    assert result.status.routes.routes_v6
    dead = await _gather(node.socket_v4, node.socket_v6)
    assert {family for family, _ in dead.errors} == {4}
    assert dead.status.agent.bird_v4.state is BGPDaemonState.NOT_READY  # while it is down
    assert dead.status.agent.bird_v6.state is BGPDaemonState.READY
    lab.bird_start(1, 4)
    await _complete(lab)


async def test_restart_shows_a_new_boot_time(lab: Any) -> None:
    before = (await _complete(lab)).status.agent.bird_v4.last_boot_time
    await asyncio.sleep(1.1)  # BIRD 1.6 prints boot times to the second
    lab.bird_restart(1, 4)
    after = (await _complete(lab)).status.agent.bird_v4.last_boot_time
    assert before and after and after > before


@pytest.fixture(scope="module")
def big_bird2() -> Iterator[Any]:
    """One lab node running BIRD 2 (one daemon for both families) with 20,000 extra IPv4 routes."""
    with built_lab("2", nodes=1, ipv6=True) as lab:
        lab.set_routes(1, EXTRA_ROUTES)
        yield lab


def _configure(lab: Any) -> None:
    assert "Reconfigured" in " ".join(lab.birdc(1, 4, "configure"))


async def test_reconfigured_mid_show_route_bird16(lab: Any, tmp_path: Path) -> None:
    """BIRD 1.6.8 finishes a `show route` reply across a `birdc configure` (observed: no 8004)."""
    node = lab.node(1)
    async with pausing_relay(tmp_path / "bird.ctl", node.socket_v4, lambda: _configure(lab)) as relay:
        result = await _gather(relay.path, node.socket_v6)
    assert relay.fired == 1
    assert result.errors == {}
    assert result.routes_total[4] >= EXTRA_ROUTES


@pytest.mark.parametrize("configures", [1, 2])
async def test_reconfigured_mid_show_route_bird2(big_bird2: Any, tmp_path: Path, configures: int) -> None:
    """BIRD 2 ends a `show route` reply cut by `birdc configure` with `8004 Stopped due to
    reconfiguration`. Once: the collector starts the table over and gets all of it. Twice in a
    row: it keeps the routes read before the interruption and reports Routes as failed for the
    daemon's families; the other classes are intact and the next collection is complete."""
    node = big_bird2.node(1)
    started = time.monotonic()
    async with pausing_relay(
        tmp_path / "bird.ctl", node.socket_v4, lambda: _configure(big_bird2), times=configures
    ) as relay:
        result = await _gather(relay.path, tmp_path / "no-bird6.ctl")
    assert relay.fired == configures
    # BIRD 2 really ended the reply with 8004 each time, and the collector asked again once.
    assert relay.interrupted == configures
    assert relay.show_routes == 2
    if configures == 1:
        assert result.errors == {}
        assert result.routes_total[4] >= EXTRA_ROUTES
    else:
        assert set(result.errors) == {(4, ROUTES), (6, ROUTES)}
        assert isinstance(result.errors[(4, ROUTES)], BirdReconfigurationInterrupt)
        assert 0 < len(result.status.routes.routes_v4) < EXTRA_ROUTES
        assert any("interrupted twice" in note for note in result.notes)
        assert result.status.agent.bird_v4.state is BGPDaemonState.READY
        assert result.status.bgp.peers_v4 == [] and result.status.bgp.number_established_v4 == 0
    assert time.monotonic() - started < 30
    again = await gather(BirdSockets(v4=(str(node.socket_v4),)), ALL_CLASSES, route_limit=None)
    assert again.errors == {} and again.routes_total[4] >= EXTRA_ROUTES
