"""Datastore faults with the real agent: a real etcd stopped and restarted (10 s here, 60 s in the
soak suite), restarted with compaction so the watch revision is gone, and the real embedded
database locked by another process for 10 s. BIRD is the transcript replay (tests/faults): these
tests are about the datastore, and its content can be changed on demand during the outage.

Expected every time: the agent keeps collecting, reports the outage (snapshot for metrics, the
status file's `datastore` component), writes the latest status within one period of recovery,
and misses no spec change."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.runner import NodeStatusAgent
from calico_nodestatus.agent.stale import stale_pieces
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.health.statusfile import read_status_file
from tests.faults.replay import Fault, ReplayServer
from tests.faults.tcp_relay import TcpRelay, tcp_relay
from tests.plugins.agent import REPO, node_status, wait_for
from tests.plugins.etcd import EtcdServer, free_port
from tests.reliability.conftest import NODE, replay_collector, running_agent

PERIOD = 1
DATASTORE_TIMEOUT = 2.0  # the agent's per-request datastore timeout in these tests (conftest)
# The first successful datastore operation after the outage (the 0.5 s heartbeat here) wakes the
# watch out of its backoff, so a spec change made right after recovery arrives within one period
# (+ a request timeout for a call racing the datastore's start-up), whatever the outage's length.
WITHIN_ONE_PERIOD_AFTER_RECOVERY = PERIOD + DATASTORE_TIMEOUT + 2


def _datastore_component(status_file: Path) -> Any:
    return read_status_file(status_file).components.get("datastore")


async def _v4_routes(store: Datastore, name: str) -> int:
    return len((await store.get(name)).status.routes.routes_v4)


async def _v4_routes_stale(store: Datastore, name: str) -> bool:
    """The change made during the outage (bird's `show route` fails) is written: the last good
    routes kept and named stale."""
    obj = await store.get(name)
    return "Routes/v4" in stale_pieces(obj.metadata.annotations) and bool(obj.status.routes.routes_v4)


async def _outage(
    agent: NodeStatusAgent,
    status_file: Path,
    seconds: float,
    during: Callable[[], None],
) -> None:
    """While the datastore is down: the agent keeps collecting on schedule (writes run in their
    own task, so a hanging or locked datastore never holds the collection loop) and says the
    datastore is out."""
    collections = agent.snapshot().counters.collections
    during()
    await asyncio.sleep(seconds)
    snapshot = agent.snapshot()
    least = seconds / PERIOD - 1
    assert snapshot.counters.collections - collections >= least, "collection stalled"
    assert not snapshot.datastore_ok and snapshot.datastore_reason
    component = _datastore_component(status_file)
    assert component is not None and not component.ready and component.reason


async def _etcd_outage(
    etcd: EtcdServer, bird: tuple[ReplayServer, ReplayServer], tmp_path: Path, seconds: float
) -> None:
    status_file = tmp_path / "status.json"
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with open_datastore(config) as store, open_datastore(config) as user:
        await user.create(node_status("outage", NODE, ["Agent", "BGP", "Routes"], PERIOD))
        collector = replay_collector(bird)
        async with running_agent(store, collector, status_file=status_file, resync_seconds=600) as agent:
            await wait_for(lambda: _v4_routes(user, "outage"), 5, "status filled")

            def bird_changes() -> None:
                etcd.stop()
                bird[0].fault = Fault.CUT  # BIRD's answer changes while the datastore is away

            await _outage(agent, status_file, seconds, bird_changes)
            etcd.start()
            recovered = time.monotonic()

            async def latest_written() -> bool:
                return await _v4_routes_stale(user, "outage")

            # One period, plus one request timeout for the first write racing etcd's start-up.
            within = WITHIN_ONE_PERIOD_AFTER_RECOVERY
            await wait_for(latest_written, within, "the latest status written after recovery")
            assert time.monotonic() - recovered <= within
            # The resumed watch delivers the next spec change (no re-list: resync is 10 minutes).
            obj = await user.get("outage")
            obj.spec.classes = [NodeStatusClass.AGENT]
            await user.update(obj)

            async def routes_cleared() -> bool:
                stored = await user.get("outage")
                return not stored.status.bgp.peers_v4 and stored.status.agent.bird_v4.state == "Ready"

            changed = time.monotonic()
            await wait_for(routes_cleared, within, "spec change applied")
            assert time.monotonic() - changed <= within
            await wait_for(lambda: _ok(agent, status_file), 3, "outage cleared in snapshot and status file")


async def _ok(agent: NodeStatusAgent, status_file: Path) -> bool:
    component = _datastore_component(status_file)
    return agent.snapshot().datastore_ok and component is not None and component.ready


@pytest.mark.etcd
@pytest.mark.slow
async def test_etcd_stopped_10s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), replayed_bird, tmp_path, 10)


@pytest.mark.etcd
@pytest.mark.soak
async def test_etcd_stopped_60s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), replayed_bird, tmp_path, 60)


@asynccontextmanager
async def _partitioned_agent(
    etcd: EtcdServer, bird: tuple[ReplayServer, ReplayServer], name: str, classes: list[str]
) -> AsyncIterator[tuple[Datastore, TcpRelay]]:
    """The agent reaching etcd through a relay that can be cut (a partition), and a user's client
    talking to etcd directly. Resync is 10 minutes: only the watch can deliver changes."""
    user_config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with tcp_relay(free_port(), etcd.client_port) as relay, open_datastore(user_config) as user:
        agent_env = etcd.datastore_env() | {"ETCD_ENDPOINTS": f"http://127.0.0.1:{relay.port}"}
        await user.create(node_status(name, NODE, classes, 60))
        async with (
            open_datastore(DatastoreConfig.from_env(environ=agent_env)) as store,
            running_agent(store, replay_collector(bird), resync_seconds=600),
        ):

            async def reported() -> bool:
                return (await user.get(name)).status.agent.bird_v4.state == "Ready"

            await wait_for(reported, 5, "first report")
            yield user, relay


async def _respec(store: Datastore, name: str, classes: list[NodeStatusClass]) -> CalicoNodeStatus:
    obj = await store.get(name)
    obj.spec.classes = classes
    return await store.update(obj)


def _bgp_without_routes(user: Datastore, name: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        stored = await user.get(name)
        return stored.status.bgp.number_established_v4 == 2 and not stored.status.routes.routes_v4

    return probe


@pytest.mark.etcd
@pytest.mark.slow
async def test_watch_dropped_resumes_without_missing_a_change(
    etcd_factory: Callable[..., EtcdServer],
    replayed_bird: tuple[ReplayServer, ReplayServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch stream is cut (network partition, etcd keeps running) while the spec changes:
    the agent resumes the watch from its last revision and gets the change, without a re-list."""
    caplog.set_level("INFO", logger="calico_nodestatus")
    async with _partitioned_agent(etcd_factory(), replayed_bird, "dropped", ["Agent"]) as (user, relay):
        await relay.cut()
        await _respec(user, "dropped", [NodeStatusClass.AGENT, NodeStatusClass.BGP])
        await asyncio.sleep(1)
        await relay.restore()
        await wait_for(_bgp_without_routes(user, "dropped"), 10, "the change made during the cut applied")
    assert "event=watch_failed" in caplog.text
    assert caplog.text.count("event=listed") == 1, "resumed by revision, not by a re-list"


@pytest.mark.etcd
@pytest.mark.slow
async def test_etcd_compacted_past_the_watch_revision_relists(
    etcd_factory: Callable[..., EtcdServer],
    replayed_bird: tuple[ReplayServer, ReplayServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the agent is cut off, the spec changes twice and etcd compacts past the agent's watch
    revision: the watch cannot resume (WatchExpired), the agent lists again and applies the LAST
    spec. (The restart half of this fault is test_etcd_stopped_10s_and_restarted.)"""
    caplog.set_level("INFO", logger="calico_nodestatus")
    etcd = etcd_factory()
    async with _partitioned_agent(etcd, replayed_bird, "compacted", ["Agent"]) as (user, relay):
        await relay.cut()
        await _respec(user, "compacted", [NodeStatusClass.AGENT, NodeStatusClass.ROUTES])
        last = await _respec(user, "compacted", [NodeStatusClass.AGENT, NodeStatusClass.BGP])
        etcd.etcdctl("compaction", str(last.metadata.resource_version))
        await relay.restore()
        await wait_for(_bgp_without_routes(user, "compacted"), 10, "the last spec applied after the re-list")
    assert "event=watch_expired" in caplog.text
    assert caplog.text.count("event=listed") == 2


async def test_embedded_locked_10s_by_another_process(
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    db = tmp_path / "datastore.db"
    status_file = tmp_path / "status.json"
    async with EmbeddedDatastore(db) as store, EmbeddedDatastore(db) as user:
        await user.create(node_status("locked", NODE, ["Agent", "BGP", "Routes"], PERIOD))
        async with running_agent(store, replay_collector(replayed_bird), status_file=status_file) as agent:
            await wait_for(lambda: _v4_routes(user, "locked"), 5, "status filled")
            locker = subprocess.Popen(  # noqa: ASYNC220 - a plain child holding a lock, no I/O wait
                [sys.executable, "-m", "tests.datastore.embedded_worker", "lock", str(db)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            try:
                assert locker.stdout is not None and locker.stdin is not None
                assert locker.stdout.readline().strip() == "locked"

                def bird_changes() -> None:
                    replayed_bird[0].fault = Fault.CUT

                await _outage(agent, status_file, 10, bird_changes)
                locker.stdin.write("release\n")
                locker.stdin.flush()
                assert locker.wait(5) == 0
            finally:
                if locker.poll() is None:
                    locker.kill()
                    locker.wait()
            await wait_for(
                lambda: _v4_routes_stale(user, "locked"), PERIOD + 6, "latest status written after unlock"
            )
            await wait_for(lambda: _ok(agent, status_file), 6, "outage cleared")
