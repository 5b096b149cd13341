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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import NodeStatusAgent
from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig, open_datastore
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.health.statusfile import read_status_file
from tests.faults.replay import Fault, ReplayServer, replaying
from tests.plugins.etcd import EtcdServer
from tests.reliability.conftest import node_status, running_agent, wait_for

PERIOD = 1
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def bird(tmp_path: Path) -> AsyncIterator[tuple[ReplayServer, ReplayServer]]:
    async with (
        replaying(tmp_path / "bird.ctl") as v4,
        replaying(tmp_path / "bird6.ctl", prefix="bird6__") as v6,
    ):
        yield v4, v6


def _collector(bird: tuple[ReplayServer, ReplayServer]) -> Any:
    return bird_collector(str(bird[0].path), str(bird[1].path))


def _datastore_component(status_file: Path) -> Any:
    return read_status_file(status_file).components.get("datastore")


async def _v4_routes(store: Datastore, name: str) -> int:
    return len((await store.get(name)).status.routes.routes_v4)


async def _outage(
    agent: NodeStatusAgent,
    status_file: Path,
    seconds: float,
    during: Callable[[], None],
) -> None:
    """While the datastore is down: the agent keeps collecting and says the datastore is out."""
    collections = agent.snapshot().counters.collections
    during()
    await asyncio.sleep(seconds)
    snapshot = agent.snapshot()
    assert snapshot.counters.collections >= collections + seconds / PERIOD - 2, "collection stalled"
    assert not snapshot.datastore_ok and snapshot.datastore_reason
    component = _datastore_component(status_file)
    assert component is not None and not component.ready and component.reason


async def _etcd_outage(
    etcd: EtcdServer, bird: tuple[ReplayServer, ReplayServer], tmp_path: Path, seconds: float
) -> None:
    status_file = tmp_path / "status.json"
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with open_datastore(config) as store, open_datastore(config) as user:
        await user.create(node_status("outage", ["Agent", "BGP", "Routes"], PERIOD))
        async with running_agent(store, _collector(bird), status_file=status_file, resync_seconds=600) as agent:
            await wait_for(lambda: _v4_routes(user, "outage"), 5, "status filled")

            def bird_changes() -> None:
                etcd.stop()
                bird[0].fault = Fault.CUT  # BIRD's answer changes while the datastore is away

            await _outage(agent, status_file, seconds, bird_changes)
            etcd.start()
            recovered = time.monotonic()

            async def latest_written() -> bool:
                return await _v4_routes(user, "outage") == 0

            await wait_for(latest_written, PERIOD + 3, "the latest status written after recovery")
            assert time.monotonic() - recovered <= PERIOD + 3
            # The resumed watch delivers the next spec change (no re-list: resync is 10 minutes).
            obj = await user.get("outage")
            obj.spec.classes = [NodeStatusClass.AGENT]
            await user.update(obj)

            async def routes_cleared() -> bool:
                stored = await user.get("outage")
                return not stored.status.bgp.peers_v4 and stored.status.agent.bird_v4.state == "Ready"

            await wait_for(routes_cleared, PERIOD + 2, "spec change after the outage applied")
            await wait_for(lambda: _ok(agent, status_file), 3, "outage cleared in snapshot and status file")


async def _ok(agent: NodeStatusAgent, status_file: Path) -> bool:
    component = _datastore_component(status_file)
    return agent.snapshot().datastore_ok and component is not None and component.ready


@pytest.mark.etcd
@pytest.mark.slow
async def test_etcd_stopped_10s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), bird, tmp_path, 10)


@pytest.mark.etcd
@pytest.mark.soak
async def test_etcd_stopped_60s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), bird, tmp_path, 60)


@pytest.mark.etcd
@pytest.mark.slow
async def test_etcd_restarted_with_compaction_relists(
    etcd_factory: Callable[..., EtcdServer],
    bird: tuple[ReplayServer, ReplayServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the agent is cut off, the spec changes twice and etcd compacts past the agent's watch
    revision: the watch cannot resume, the agent lists again and applies the LAST spec."""
    etcd = etcd_factory()
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    caplog.set_level("INFO", logger="calico_nodestatus")
    async with open_datastore(config) as store:
        await store.create(node_status("compacted", ["Agent"], 60))
        async with running_agent(store, _collector(bird), resync_seconds=600):

            async def agent_only() -> bool:
                obj = await store.get("compacted")
                return obj.status.agent.bird_v4.state == "Ready"

            await wait_for(agent_only, 5, "first report")
            etcd.stop()
            await asyncio.sleep(4)  # the watch backs off (seconds by now): time to change and compact
            etcd.start()
            async with open_datastore(config) as user:
                obj = await user.get("compacted")
                obj.spec.classes = [NodeStatusClass.AGENT, NodeStatusClass.ROUTES]
                obj = await user.update(obj)
                obj.spec.classes = [NodeStatusClass.AGENT, NodeStatusClass.BGP]
                obj = await user.update(obj)
                revision = obj.metadata.resource_version
            etcd.etcdctl("compaction", str(revision))

            async def bgp_only() -> bool:
                stored = await store.get("compacted")
                return stored.status.bgp.number_established_v4 == 2 and not stored.status.routes.routes_v4

            await wait_for(bgp_only, 10, "the last spec applied after the re-list")
    assert "event=watch_expired" in caplog.text, "the watch revision was not compacted away in time"


async def test_embedded_locked_10s_by_another_process(
    bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    db = tmp_path / "datastore.db"
    status_file = tmp_path / "status.json"
    async with EmbeddedDatastore(db) as store, EmbeddedDatastore(db) as user:
        await user.create(node_status("locked", ["Agent", "BGP", "Routes"], PERIOD))
        async with running_agent(store, _collector(bird), status_file=status_file) as agent:
            await wait_for(lambda: _v4_routes(user, "locked"), 5, "status filled")
            locker = subprocess.Popen(
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
                    bird[0].fault = Fault.CUT

                await _outage(agent, status_file, 10, bird_changes)
                locker.stdin.write("release\n")
                locker.stdin.flush()
                assert locker.wait(5) == 0
            finally:
                if locker.poll() is None:
                    locker.kill()
                    locker.wait()
            await wait_for(lambda: _v4_routes_gone(user), PERIOD + 6, "latest status written after unlock")
            await wait_for(lambda: _ok(agent, status_file), 6, "outage cleared")


async def _v4_routes_gone(store: Datastore) -> bool:
    return await _v4_routes(store, "locked") == 0
