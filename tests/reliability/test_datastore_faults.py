"""Datastore faults with the real agent reading the real BIRD pair of the lab (`bird_mesh`): a real
etcd stopped and restarted (10 s here, 60 s in the soak suite), cut off by a partition while the
data changes and is compacted, and the real embedded database locked by another process for 10 s.
BIRD's answer is changed during an outage by loading extra routes on the node.

Expected every time: the agent keeps collecting, reports the outage (snapshot for metrics, the
status file's `datastore` component), writes the latest status within one period of recovery,
clears the outage report as soon as the datastore answers again, and misses no spec change."""

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
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.health.statusfile import read_status_file
from calico_nodestatus.lab import Lab
from tests.faults.tcp_relay import TcpRelay, tcp_relay
from tests.plugins.agent import REPO, node_status, wait_for
from tests.plugins.etcd import EtcdServer, free_port
from tests.reliability.conftest import NODE, lab_collector, running_agent

pytestmark = pytest.mark.lab

PERIOD = 1
DATASTORE_TIMEOUT = 2.0  # the agent's per-request datastore timeout in these tests (conftest)
# The first successful datastore operation after the outage (the 0.5 s heartbeat here) wakes the
# watch out of its backoff and retries a write waiting in its backoff, so the latest status and a
# spec change made right after recovery arrive within one period (+ a request timeout for a call
# racing the datastore's start-up), whatever the outage's length.
WITHIN_ONE_PERIOD_AFTER_RECOVERY = PERIOD + DATASTORE_TIMEOUT + 2
ROUTES_ADDED = 3  # extra routes loaded on the node during an outage: BIRD's answer changes
# How long an outage may take on a loaded machine to show what it must (it lasts at least the
# stated seconds, and until the agent has collected that many times during it).
OUTAGE_DEADLINE = 120


def _datastore_component(status_file: Path) -> Any:
    return read_status_file(status_file).components.get("datastore")


async def _v4_routes(store: Datastore, name: str) -> int:
    return len((await store.get(name)).status.routes.routes_v4)


async def _outage(agent: NodeStatusAgent, status_file: Path, seconds: float, lab: Lab) -> None:
    """While the datastore is down (started by the caller): BIRD's answer changes, and the agent
    keeps collecting on schedule (writes run in their own task, so a hanging or locked datastore
    never holds the collection loop) and says the datastore is out. The outage lasts `seconds`
    and at least one collection per period of it (less one), however slow this machine is."""
    started = time.monotonic()
    collections = agent.snapshot().counters.collections
    lab.set_routes(1, ROUTES_ADDED)

    def reported() -> bool:
        snapshot = agent.snapshot()
        component = _datastore_component(status_file)
        return (
            not snapshot.datastore_ok
            and bool(snapshot.datastore_reason)
            and component is not None
            and not component.ready
            and bool(component.reason)
        )

    async def outage_reported() -> bool:
        return reported()

    await wait_for(outage_reported, OUTAGE_DEADLINE, "the outage reported in snapshot and status file")
    least = seconds / PERIOD - 1

    async def lasted() -> bool:
        done = agent.snapshot().counters.collections - collections
        return done >= least and time.monotonic() - started >= seconds

    await wait_for(lasted, OUTAGE_DEADLINE, f"{least:g} collections during the outage")
    assert reported(), "the outage stopped being reported while it lasted"


async def _etcd_outage(etcd: EtcdServer, lab: Lab, tmp_path: Path, seconds: float) -> None:
    status_file = tmp_path / "status.json"
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with open_datastore(config) as store, open_datastore(config) as user:
        await user.create(node_status("outage", NODE, ["Agent", "BGP", "Routes"], PERIOD))
        collector = lab_collector(lab)
        async with running_agent(store, collector, status_file=status_file, resync_seconds=600) as agent:
            before = await wait_for(lambda: _v4_routes(user, "outage"), 30, "status filled")
            etcd.stop()
            await _outage(agent, status_file, seconds, lab)
            etcd.start()
            recovered = time.monotonic()

            async def latest_written() -> bool:
                return await _v4_routes(user, "outage") == before + ROUTES_ADDED

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
            # Every kind of datastore work (writes, heartbeat, watch) has worked again by now.
            cleared = "outage cleared in snapshot and status file"
            await wait_for(lambda: _ok(agent, status_file), within, cleared)


async def _ok(agent: NodeStatusAgent, status_file: Path) -> bool:
    component = _datastore_component(status_file)
    return agent.snapshot().datastore_ok and component is not None and component.ready


@pytest.mark.etcd
@pytest.mark.slow
async def test_etcd_stopped_10s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], bird_mesh: Lab, tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), bird_mesh, tmp_path, 10)


@pytest.mark.etcd
@pytest.mark.soak
async def test_etcd_stopped_60s_and_restarted(
    etcd_factory: Callable[..., EtcdServer], bird_mesh: Lab, tmp_path: Path
) -> None:
    await _etcd_outage(etcd_factory(), bird_mesh, tmp_path, 60)


@asynccontextmanager
async def _partitioned_agent(
    etcd: EtcdServer, lab: Lab, name: str, classes: list[str], period: int = 60
) -> AsyncIterator[tuple[Datastore, TcpRelay, NodeStatusAgent]]:
    """The agent reaching etcd through a relay that can be cut (a partition), and a user's client
    talking to etcd directly. Resync is 10 minutes: only the watch can deliver changes."""
    user_config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with tcp_relay(free_port(), etcd.client_port) as relay, open_datastore(user_config) as user:
        agent_env = etcd.datastore_env() | {"ETCD_ENDPOINTS": f"http://127.0.0.1:{relay.port}"}
        await user.create(node_status(name, NODE, classes, period))
        async with (
            open_datastore(DatastoreConfig.from_env(environ=agent_env)) as store,
            running_agent(store, lab_collector(lab), resync_seconds=600) as agent,
        ):

            async def reported() -> bool:
                return (await user.get(name)).status.agent.bird_v4.state == "Ready"

            await wait_for(reported, 30, "first report")
            yield user, relay, agent


# Writes failing through a partition until the write backoff is at least this long (5 failures:
# 4-8 s), so a retry that waited for it could not pass for one made when the datastore came back.
FAILED_WRITES = 5
BACKOFF_PERIOD = 20  # no collection (which would write at once) between those failures and recovery


@pytest.mark.etcd
@pytest.mark.slow
async def test_write_in_backoff_is_retried_as_soon_as_the_datastore_answers(
    etcd_factory: Callable[..., EtcdServer], bird_mesh: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """A status whose write failed through a partition waits in a backoff that grew with every
    failure. When the heartbeat reaches the datastore again, the write is retried at once: the
    latest status is stored before that backoff would have ended, and before the next collection
    (which would have written it anyway)."""
    caplog.set_level("INFO", logger="calico_nodestatus")
    classes = ["Agent", "BGP", "Routes"]
    async with _partitioned_agent(etcd_factory(), bird_mesh, "backoff", classes, BACKOFF_PERIOD) as (
        user,
        relay,
        agent,
    ):
        before = await _v4_routes(user, "backoff")
        await relay.cut()
        bird_mesh.set_routes(1, ROUTES_ADDED)  # the next collection's status differs: it must be written

        async def backed_off() -> bool:
            return agent.snapshot().counters.write_errors >= FAILED_WRITES

        await wait_for(backed_off, BACKOFF_PERIOD + 30, f"{FAILED_WRITES} failed writes")
        collections = agent.snapshot().counters.collections
        last_failure = [r for r in caplog.records if "event=write_failed" in r.getMessage()][-1]
        retry_in = float(last_failure.getMessage().split("retry_in=")[1].split("s")[0])
        await relay.restore()

        async def latest_written() -> bool:
            return await _v4_routes(user, "backoff") == before + ROUTES_ADDED

        await wait_for(latest_written, BACKOFF_PERIOD, "the latest status written after the partition")
        written_at = agent.snapshot().last_write_at
        assert agent.snapshot().counters.collections == collections, "written by a fresh collection"
    assert written_at is not None
    waited = written_at.timestamp() - last_failure.created
    assert waited < retry_in, f"written {waited:.2f}s after the last failure: its {retry_in}s backoff ran out"


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
    bird_mesh: Lab,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch stream is cut (network partition, etcd keeps running) while the spec changes:
    the agent resumes the watch from its last revision and gets the change, without a re-list."""
    caplog.set_level("INFO", logger="calico_nodestatus")
    async with _partitioned_agent(etcd_factory(), bird_mesh, "dropped", ["Agent"]) as (user, relay, _):
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
    bird_mesh: Lab,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the agent is cut off, the spec changes twice and etcd compacts past the agent's watch
    revision: the watch cannot resume (WatchExpired), the agent lists again and applies the LAST
    spec. (The restart half of this fault is test_etcd_stopped_10s_and_restarted.)"""
    caplog.set_level("INFO", logger="calico_nodestatus")
    etcd = etcd_factory()
    async with _partitioned_agent(etcd, bird_mesh, "compacted", ["Agent"]) as (user, relay, _):
        await relay.cut()
        await _respec(user, "compacted", [NodeStatusClass.AGENT, NodeStatusClass.ROUTES])
        last = await _respec(user, "compacted", [NodeStatusClass.AGENT, NodeStatusClass.BGP])
        etcd.etcdctl("compaction", str(last.metadata.resource_version))
        await relay.restore()
        await wait_for(_bgp_without_routes(user, "compacted"), 10, "the last spec applied after the re-list")
    assert "event=watch_expired" in caplog.text
    assert caplog.text.count("event=listed") == 2


async def test_embedded_locked_10s_by_another_process(bird_mesh: Lab, tmp_path: Path) -> None:
    db = tmp_path / "datastore.db"
    status_file = tmp_path / "status.json"
    async with EmbeddedDatastore(db) as store, EmbeddedDatastore(db) as user:
        await user.create(node_status("locked", NODE, ["Agent", "BGP", "Routes"], PERIOD))
        async with running_agent(store, lab_collector(bird_mesh), status_file=status_file) as agent:
            before = await wait_for(lambda: _v4_routes(user, "locked"), 30, "status filled")
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
                await _outage(agent, status_file, 10, bird_mesh)
                locker.stdin.write("release\n")
                locker.stdin.flush()
                assert locker.wait(5) == 0
            finally:
                if locker.poll() is None:
                    locker.kill()
                    locker.wait()

            async def latest_written() -> bool:
                return await _v4_routes(user, "locked") == before + ROUTES_ADDED

            within = WITHIN_ONE_PERIOD_AFTER_RECOVERY
            await wait_for(latest_written, within, "latest status written after unlock")
            await wait_for(lambda: _ok(agent, status_file), within, "outage cleared")
