"""The agent against real BIRD daemons that fail part-way (BIRD 1.6.8's bird + bird6 and BIRD 2):
bird6 stopped in the middle of a cycle, a BIRD stopped (SIGSTOP) for longer than the query timeout,
BIRD killed during `show route`, BIRD 2 reconfigured during `show route`.

For each, the object read while the fault lasts holds the last good data of the failed pieces (never
emptiness or zeros), and the collection-errors annotation names those pieces, with `get -o wide`'s
STALE column; once BIRD answers again, the data is fresh and the marker gone. The relay
(tests/faults/relay.py) passes the daemons' real bytes and only picks the moment of the fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION, read_annotation
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.agent.stale import COLLECTION_ERRORS_ANNOTATION, stale_pieces
from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.cli.resources import stale_cell
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from tests.faults.relay import pausing_relay
from tests.plugins.agent import embedded_env, node_status, wait_for
from tests.plugins.lab import built_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALL = ["Agent", "BGP", "Routes"]
# A `show route` reply far larger than the socket buffers, so BIRD is still writing it when the relay
# pauses (a reconfiguration then really interrupts it); the object holds what 64 KiB can.
EXTRA_ROUTES = 20_000
BUDGET = 64 * 1024
WITHIN = 30.0  # generous: the machine is shared
FOREVER = 10**9  # relay actions: every `show route` reply until the test says otherwise


def _lab(bird: str) -> Iterator[Any]:
    """Two nodes (so each family has a peer) over IPv4 and IPv6; node 1 has a large IPv4 table."""
    with built_lab(bird, nodes=2, ipv6=True) as lab:
        lab.set_routes(1, EXTRA_ROUTES)
        lab.wait_established(timeout=60)
        yield lab


@pytest.fixture(scope="module")
def lab16() -> Iterator[Any]:
    yield from _lab("1.6")


@pytest.fixture(scope="module")
def lab2() -> Iterator[Any]:
    yield from _lab("2")


@pytest.fixture(params=["1.6", "2"], ids=["bird1.6", "bird2"])
def lab(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Either lab, put back afterwards: every daemon continued, running and Established."""
    lab = request.getfixturevalue("lab16" if request.param == "1.6" else "lab2")
    yield lab
    _restore(lab)


def _restore(lab: Any) -> None:
    for daemon in lab.node(1).daemons:
        if (pid := daemon.pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    lab.bird_start(1)
    lab.wait_established(timeout=60)


def _daemon_families(lab: Any) -> tuple[int, ...]:
    """The families node 1's IPv4 daemon serves: bird alone (BIRD 1.6), or both (BIRD 2)."""
    return (4,) if lab.node(1).socket_v6 else (4, 6)


def _pieces(families: tuple[int, ...], classes: tuple[str, ...] = ("Agent", "BGP", "Routes")) -> set[str]:
    return {f"{cls}/v{family}" for family in families for cls in classes}


@contextlib.asynccontextmanager
async def _agent(tmp_path: Path, lab: Any, v4: Path) -> AsyncIterator[tuple[Datastore, NodeStatusAgent]]:
    """An in-process agent for node 1 on an embedded datastore, its IPv4 BIRD socket given (and
    bird6's for BIRD 1.6; for BIRD 2 a path where nothing listens, as in calico-node)."""
    node = lab.node(1)
    v6 = node.socket_v6 or tmp_path / "no-bird6.ctl"
    config = DatastoreConfig.from_env(environ=embedded_env(tmp_path / "datastore.db"))
    async with open_datastore(config) as store:
        settings = AgentSettings(
            node=node.name, holder=f"test/{node.name}", heartbeat_seconds=0.5, size_budget_bytes=BUDGET
        )
        agent = NodeStatusAgent(store, settings, bird_collector(str(v4), str(v6), BUDGET))
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.ready.wait(), WITHIN)
            yield store, agent
        finally:
            agent.stop()
            await asyncio.wait_for(task, WITHIN)


async def _good(store: Datastore, lab: Any, name: str = "faults", within: float = WITHIN) -> CalicoNodeStatus:
    """The object once it holds a complete report of healthy BIRD: both daemons Ready, every
    session Established, node 1's large table, no marker."""

    async def complete() -> CalicoNodeStatus | None:
        obj = await store.get(name)
        status = obj.status
        healthy = (
            status.agent.bird_v4.state == "Ready"
            and status.agent.bird_v6.state == "Ready"
            and status.bgp.number_established_v4 == 1
            and status.bgp.number_established_v6 == 1
            and _table_size(obj, 4) > EXTRA_ROUTES
            and status.routes.routes_v4
            and status.routes.routes_v6
            and not stale_pieces(obj.metadata.annotations)
        )
        return obj if healthy else None

    return await wait_for(complete, within, f"{name}: a complete, healthy report")


async def _marked(store: Datastore, pieces: set[str], name: str = "faults") -> CalicoNodeStatus:
    async def marked() -> CalicoNodeStatus | None:
        obj = await store.get(name)
        return obj if pieces <= set(stale_pieces(obj.metadata.annotations)) else None

    return await wait_for(marked, WITHIN, f"{name}: {sorted(pieces)} marked stale")


def _table_size(obj: CalicoNodeStatus, family: int) -> int:
    """Routes in the object plus those the routes-omitted annotation counts."""
    routes = obj.status.routes.routes_v4 if family == 4 else obj.status.routes.routes_v6
    counts, _cut_short = read_annotation(obj.metadata.annotations.get(ROUTES_OMITTED_ANNOTATION))
    return len(routes) + counts.get(f"v{family}", 0)


def _routes(obj: CalicoNodeStatus, family: int) -> set[str | None]:
    routes = obj.status.routes.routes_v4 if family == 4 else obj.status.routes.routes_v6
    return {route.destination for route in routes}


def _peers(obj: CalicoNodeStatus, family: int) -> list[tuple[Any, ...]]:
    peers = obj.status.bgp.peers_v4 if family == 4 else obj.status.bgp.peers_v6
    return [(peer.peer_ip, peer.type, peer.state) for peer in peers]


def _assert_last_good(obj: CalicoNodeStatus, good: CalicoNodeStatus, family: int, pieces: set[str]) -> None:
    """The failed pieces of `family` hold what `good` held (never empty, never zeros)."""
    entries = json.loads(obj.metadata.annotations[COLLECTION_ERRORS_ANNOTATION])
    for piece in pieces:
        assert entries[piece]["content"] == "stale", entries
        assert entries[piece]["since"] and entries[piece]["error"], entries
    if f"Routes/v{family}" in pieces:
        # The last good routes (the size budget may trim a few when another section grew), and
        # with the omitted count, the whole last good table.
        assert _routes(obj, family) <= _routes(good, family)
        assert len(_routes(obj, family)) >= len(_routes(good, family)) * 0.9
        assert _table_size(obj, family) == _table_size(good, family)
    if f"BGP/v{family}" in pieces:
        assert _peers(obj, family) == _peers(good, family)
        bgp, good_bgp = obj.status.bgp, good.status.bgp
        counts = (bgp.number_established_v4, bgp.number_established_v6)
        assert (
            counts[family == 6]
            == (good_bgp.number_established_v4, good_bgp.number_established_v6)[family == 6]
        )
        assert counts[family == 6] == 1
    if f"Agent/v{family}" in pieces:
        daemon = obj.status.agent.bird_v4 if family == 4 else obj.status.agent.bird_v6
        good_daemon = good.status.agent.bird_v4 if family == 4 else good.status.agent.bird_v6
        assert daemon.state == "NotReady"  # the daemon cannot be queried: that is true
        assert (daemon.version, daemon.router_id) == (good_daemon.version, good_daemon.router_id)
        assert daemon.version and daemon.router_id
    assert stale_cell(obj) == ",".join(sorted(entries))


async def _cleared(store: Datastore, lab: Any, name: str = "faults") -> CalicoNodeStatus:
    """After the fault: a complete report again and no marker."""
    obj = await _good(store, lab, name, within=60)  # sessions of a restarted BIRD come back
    assert COLLECTION_ERRORS_ANNOTATION not in obj.metadata.annotations
    assert stale_cell(obj) == "-"
    return obj


async def test_bird6_stopped_in_the_middle_of_a_cycle(lab16: Any, tmp_path: Path) -> None:
    """bird6 stops while bird's `show route` streams: the v4 half of the cycle is complete, bird6
    cannot be reached for the v6 half. The v6 pieces keep their last good content, the Agent
    section says bird6 is NotReady."""
    node = lab16.node(1)
    v6_pieces = {"Agent/v6", "BGP/v6", "Routes/v6"}
    try:
        async with (
            pausing_relay(
                tmp_path / "bird.ctl", node.socket_v4, lambda: lab16.bird_stop(1, 6), times=0
            ) as relay,
            _agent(tmp_path, lab16, relay.path) as (store, _),
        ):
            await store.create(node_status("faults", node.name, ALL, 1))
            good = await _good(store, lab16)
            relay.times = 1
            during = await _marked(store, v6_pieces)
            assert relay.fired == 1
            _assert_last_good(during, good, 6, v6_pieces)
            assert set(stale_pieces(during.metadata.annotations)) == v6_pieces
            assert during.status.agent.bird_v4.state == "Ready"  # the v4 half is current
            assert _table_size(during, 4) > EXTRA_ROUTES
            lab16.bird_start(1, 6)
            await _cleared(store, lab16)
    finally:
        _restore(lab16)


async def test_bird_stopped_longer_than_the_query_timeout(
    lab: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: the socket still accepts, nothing answers; each query times out (2 s). The pieces
    of the stopped daemon's families keep their last good content until it is continued."""
    caplog.set_level(logging.INFO, logger="calico_nodestatus.agent.runner")
    node = lab.node(1)
    families = _daemon_families(lab)
    pieces = _pieces(families)
    async with _agent(tmp_path, lab, node.socket_v4) as (store, agent):
        await store.create(node_status("faults", node.name, ALL, 1))
        good = await _good(store, lab)
        pid = node.daemon_for(4).pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            during = await _marked(store, pieces)
            entries = json.loads(during.metadata.annotations[COLLECTION_ERRORS_ANNOTATION])
            # (BIRD 2: the v6 pieces name the bird6 socket tried after the daemon did not answer.)
            for piece in _pieces((4,)):
                assert "sent nothing for 2s" in entries[piece]["error"], entries
            for family in families:
                _assert_last_good(during, good, family, pieces)
            # Two more timed-out collections: still the last good data, and the same `since`.
            failures = agent.snapshot().counters.piece_failures["Agent/v4"]

            async def two_more() -> bool:
                return agent.snapshot().counters.piece_failures["Agent/v4"] >= failures + 2

            await wait_for(two_more, WITHIN, "two more timed-out collections")
            later = await store.get("faults")
            assert json.loads(later.metadata.annotations[COLLECTION_ERRORS_ANNOTATION]) == entries
            for family in families:
                _assert_last_good(later, good, family, pieces)
        finally:
            os.kill(pid, signal.SIGCONT)
        await _cleared(store, lab)
    # One log line when the pieces started failing and one when they were collected again.
    assert _events(caplog) == ["collection_incomplete", "collection_complete"]


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    wanted = ("event=collection_incomplete", "event=collection_complete")
    messages = [record.getMessage() for record in caplog.records]
    return [message.split()[0].removeprefix("event=") for message in messages if message.startswith(wanted)]


async def test_bird_killed_during_show_route(lab: Any, tmp_path: Path) -> None:
    """SIGKILL while `show route` streams: that cycle's Routes fail (the cut table is not taken as
    the table); the next cycles find no daemon: NotReady while it is down, BGP and Routes kept."""
    node = lab.node(1)
    families = _daemon_families(lab)
    pieces = _pieces(families)
    async with (
        pausing_relay(
            tmp_path / "bird.ctl", node.socket_v4, lambda: lab.bird_stop(1, 4, sig=signal.SIGKILL), times=0
        ) as relay,
        _agent(tmp_path, lab, relay.path) as (store, _),
    ):
        await store.create(node_status("faults", node.name, ALL, 1))
        good = await _good(store, lab)
        relay.times = 1
        during = await _marked(store, pieces)
        assert relay.fired == 1
        for family in families:
            _assert_last_good(during, good, family, pieces)
        lab.bird_start(1, 4)
        await _cleared(store, lab)


async def test_bird2_reconfigured_during_show_route(lab2: Any, tmp_path: Path) -> None:
    """`birdc configure` during every `show route` (BIRD 2 ends the reply with 8004, and again on
    the collector's retry): the Routes pieces keep their last good tables; Agent and BGP stay
    current. An object created meanwhile has no earlier routes: it gets the routes read before the
    interruption, marked `partial`, and routes-omitted says the lists were cut short, counting the
    routes never read."""
    node = lab2.node(1)

    def configure() -> None:
        assert "Reconfigured" in " ".join(lab2.birdc(1, 4, "configure"))

    pieces = {"Routes/v4", "Routes/v6"}
    try:
        async with (
            pausing_relay(tmp_path / "bird.ctl", node.socket_v4, configure, times=0) as relay,
            _agent(tmp_path, lab2, relay.path) as (store, _),
        ):
            await store.create(node_status("faults", node.name, ALL, 1))
            good = await _good(store, lab2)
            relay.times = FOREVER
            during = await _marked(store, pieces)
            assert set(stale_pieces(during.metadata.annotations)) == pieces
            for family in (4, 6):
                _assert_last_good(during, good, family, pieces)
            assert during.status.agent.bird_v4.state == "Ready"
            assert _peers(during, 4) == _peers(good, 4)
            # The kept tables were complete: routes-omitted counts only the budget's cuts.
            assert read_annotation(during.metadata.annotations[ROUTES_OMITTED_ANNOTATION])[1] == set()
            assert relay.interrupted >= 2
            await store.create(node_status("fresh", node.name, ["Routes"], 1))
            fresh = await _marked(store, {"Routes/v4"}, "fresh")
            entries = json.loads(fresh.metadata.annotations[COLLECTION_ERRORS_ANNOTATION])
            assert entries["Routes/v4"]["content"] == "partial"
            omitted = json.loads(fresh.metadata.annotations[ROUTES_OMITTED_ANNOTATION])
            assert "v4" in omitted["cutShort"]
            # What was kept, read and left out, and never read add up to the last table read in full.
            assert fresh.status.routes.routes_v4
            assert _table_size(fresh, 4) == _table_size(good, 4)
            relay.times = relay.fired
            await _cleared(store, lab2)
            await _cleared_routes(store, "fresh")
    finally:
        _restore(lab2)


async def _cleared_routes(store: Datastore, name: str) -> None:
    async def complete() -> CalicoNodeStatus | None:
        obj = await store.get(name)
        annotations = obj.metadata.annotations
        _counts, cut_short = read_annotation(annotations.get(ROUTES_OMITTED_ANNOTATION))
        done = COLLECTION_ERRORS_ANNOTATION not in annotations and not cut_short
        return obj if done and _table_size(obj, 4) > EXTRA_ROUTES else None

    await wait_for(complete, WITHIN, f"{name}: complete routes, no markers")
