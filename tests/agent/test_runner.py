"""The runner's own decisions, each where a real part produces the case on demand: the lab's BIRD
(1.6, node 1) collects, held at the start of a collection when a test needs a change to land
during one; a real etcd is stopped, or cut off by a relay, or rewritten behind the agent's watch
the way Calico's own tools write it; the real embedded database is read through a view that does
not filter by node, the way a backend without a node-filtered list and watch delivers objects.

- Period 0: a status whose first write fails is kept and written once the datastore is back,
  retried with the agent's ``Backoff`` (the spacing is observed on the stopped etcd).
- A collection that started before a spec change never becomes the status of the new spec.
- Objects whose spec.node is another node are dropped on every path that can deliver them: a watch
  event, a re-list, and the re-read after a write conflict."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.backoff import Backoff
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.content import CollectedSections
from calico_nodestatus.agent.runner import Collector, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Datastore, LivenessRecord, WatchEvent
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.etcd import object_key
from calico_nodestatus.datastore.factory import open_datastore
from tests.agent.conftest import node_status, wait_for
from tests.faults.tcp_relay import tcp_relay
from tests.plugins.etcd import EtcdServer, free_port
from tests.reliability.conftest import running_agent

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ELSEWHERE = "node-elsewhere"  # a node no agent of these tests runs for
QUIET_PERIOD = 60  # no periodic write within a test: only the path under test can act
FAILED_WRITES = 4  # Backoff's first four delays: 0.25-0.5, 0.5-1, 1-2 and 2-4 s


class HeldCollector:
    """The agent's real BIRD collector, held at the start of each collection while ``hold`` is on."""

    def __init__(self, collect: Collector) -> None:
        self._collect = collect
        self._released = asyncio.Event()
        self._released.set()
        self.holding = asyncio.Event()  # a collection is waiting for ``release``

    def hold(self) -> None:
        self._released.clear()
        self.holding.clear()

    def release(self) -> None:
        self._released.set()

    async def __call__(self, classes: frozenset[NodeStatusClass]) -> CollectedSections:
        if not self._released.is_set():
            self.holding.set()
            await self._released.wait()
        return await self._collect(classes)


def _collector(node: Any) -> Collector:
    return bird_collector(str(node.socket_v4), str(node.socket_v6))


async def _holding(collector: HeldCollector) -> bool:
    return collector.holding.is_set()


async def _status(store: Datastore, name: str, classes: set[NodeStatusClass]) -> CalicoNodeStatus | None:
    """The object once its status holds each of ``classes`` (what the lab's node 1 always has)."""
    obj = await store.get(name)
    status = obj.status
    present = {
        NodeStatusClass.AGENT: status.agent.bird_v4.state == "Ready",
        NodeStatusClass.BGP: bool(status.bgp.peers_v4),
        NodeStatusClass.ROUTES: bool(status.routes.routes_v4),
    }
    return obj if all(present[cls] for cls in classes) else None


async def _respec(store: Datastore, name: str, **spec: Any) -> CalicoNodeStatus:
    obj = await store.get(name)
    return await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update=spec)}))


def _tracks(agent: NodeStatusAgent, predicate: Callable[[tuple[str, ...]], bool]) -> Callable[[], Any]:
    async def probe() -> bool:
        return predicate(agent.snapshot().objects)

    return probe


# ---- period 0, its first write failing -------------------------------------------------------


def _failed_writes(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[float, float]]:
    """(when, announced retry delay) of each failed write of ``name``, from the agent's log."""
    pattern = re.compile(rf"event=write_failed name={name} .*retry_in=([0-9.]+)s")
    return [
        (record.created, float(found.group(1)))
        for record in caplog.records
        if (found := pattern.search(record.getMessage()))
    ]


async def _first_write_while_etcd_is_down(
    lab: Any, etcd: EtcdServer, caplog: pytest.LogCaptureFixture, failures: int
) -> tuple[list[tuple[float, float]], CalicoNodeStatus]:
    """A period-0 object whose first write finds etcd stopped (the first collection is held until
    etcd is down); etcd comes back after ``failures`` failed writes. Returns the failed writes
    and the object once its status is filled."""
    caplog.set_level(logging.INFO, logger="calico_nodestatus")
    node = lab.nodes[0]
    collector = HeldCollector(_collector(node))
    collector.hold()
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with open_datastore(config) as store, open_datastore(config) as user:
        await user.create(node_status("once", node.name, ["Agent", "BGP"], 0))
        async with running_agent(store, collector, node=node.name, resync_seconds=600) as agent:
            await wait_for(lambda: _holding(collector), 10, "the first collection")
            etcd.stop()
            collector.release()

            async def failed_enough() -> bool:
                return len(_failed_writes(caplog, "once")) >= failures

            await wait_for(failed_enough, 30, f"{failures} failed writes")
            failed = _failed_writes(caplog, "once")
            etcd.start()
            filled = await wait_for(
                lambda: _status(user, "once", {NodeStatusClass.AGENT, NodeStatusClass.BGP}),
                30,
                "the period-0 status written after etcd came back",
            )
            assert agent.snapshot().counters.collections == 1, "written from the one collection"
    return failed, filled


@pytest.mark.etcd
async def test_period_0_status_is_written_once_etcd_is_back_from_its_first_write(
    lab: Any, etcd_factory: Callable[..., EtcdServer], caplog: pytest.LogCaptureFixture
) -> None:
    _, filled = await _first_write_while_etcd_is_down(lab, etcd_factory(), caplog, failures=1)
    assert {p.peer_ip for p in filled.status.bgp.peers_v4} == {str(n.ipv4) for n in lab.nodes[1:]}


@pytest.mark.etcd
async def test_failed_writes_are_retried_with_backoff(
    lab: Any, etcd_factory: Callable[..., EtcdServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Each delay the agent announces lies in Backoff's range for that attempt (doubling, with
    jitter), and the next attempt really waited at least that long."""
    failures, _ = await _first_write_while_etcd_is_down(lab, etcd_factory(), caplog, FAILED_WRITES)
    schedule = Backoff()
    for attempt, (when, delay) in enumerate(failures[:FAILED_WRITES]):
        ceiling = min(schedule.cap_seconds, schedule.base_seconds * 2**attempt)
        assert ceiling / 2 - 0.01 <= delay <= ceiling + 0.01, f"attempt {attempt}: {delay}s"
        if attempt + 1 < len(failures):
            waited = failures[attempt + 1][0] - when
            assert waited >= delay - 0.01, f"attempt {attempt + 1} came {waited:.3f}s after, not {delay}s"


# ---- a spec change during a collection -------------------------------------------------------


@pytest.mark.etcd
async def test_a_collection_does_not_become_the_status_of_a_spec_that_changed_while_it_ran(
    lab: Any, etcd: EtcdServer
) -> None:
    """A status for spec A (a route added in BIRD) waits for etcd, cut off, while the next
    collection for A runs (held). The spec becomes B: BGP added, period 0. When etcd is back, the
    waiting write conflicts and its re-read adopts B mid-collection. That collection asked BIRD for
    A's classes only, so it must not become B's status; B is collected afresh (with period 0 there
    is no later collection to correct it)."""
    node = lab.nodes[0]
    collector = HeldCollector(_collector(node))
    user_config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with tcp_relay(free_port(), etcd.client_port) as relay, open_datastore(user_config) as user:
        await user.create(node_status("respec", node.name, ["Agent", "Routes"], 1))
        agent_env = etcd.datastore_env() | {"ETCD_ENDPOINTS": f"http://127.0.0.1:{relay.port}"}
        async with (
            open_datastore(DatastoreConfig.from_env(environ=agent_env)) as store,
            running_agent(store, collector, node=node.name, resync_seconds=600) as agent,
        ):
            await wait_for(lambda: _status(user, "respec", {NodeStatusClass.AGENT}), 10, "A's status")
            await relay.cut()
            lab.set_routes(node.index, 1)  # a status that differs from the stored one: a write

            async def write_waiting() -> bool:
                return agent.snapshot().counters.write_errors > 0

            await wait_for(write_waiting, 10, "a status for A waiting for etcd")
            collector.hold()
            await wait_for(lambda: _holding(collector), 10, "a collection for A under way")
            b_classes = [NodeStatusClass.AGENT, NodeStatusClass.ROUTES, NodeStatusClass.BGP]
            await _respec(user, "respec", classes=b_classes, update_period_seconds=0)
            await relay.restore()

            async def adopted_b() -> bool:
                report = agent.snapshot().object_reports.get("respec")
                return report is not None and report.update_period_seconds == 0

            await wait_for(adopted_b, 20, "B adopted by the conflicting write's re-read")
            collector.release()
            await wait_for(
                lambda: _status(user, "respec", set(b_classes)),
                10,
                "B's status collected for B",
            )


# ---- objects of another node -----------------------------------------------------------------


class EveryNode(Datastore):
    """A real datastore whose list and watch ignore the node (a backend that cannot filter by
    spec.node); with ``events=False`` its watch delivers nothing, so only re-lists bring news."""

    def __init__(self, inner: Datastore, *, events: bool = True) -> None:
        self._inner = inner
        self._events = events

    async def get(self, name: str) -> CalicoNodeStatus:
        return await self._inner.get(name)

    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        return await self._inner.list()

    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._inner.create(obj)

    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._inner.update(obj)

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._inner.update_status(obj)

    async def update_annotations(
        self, obj: CalicoNodeStatus, changes: Mapping[str, str | None]
    ) -> CalicoNodeStatus:
        return await self._inner.update_annotations(obj, changes)

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        return await self._inner.delete(name, resource_version)

    async def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        if not self._events:
            await asyncio.Event().wait()
        async for event in self._inner.watch(resource_version):
            yield event

    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        await self._inner.renew_liveness(node, holder, ttl_seconds)

    async def release_liveness(self, node: str, holder: str) -> None:
        await self._inner.release_liveness(node, holder)

    async def get_liveness(self, node: str) -> LivenessRecord | None:
        return await self._inner.get_liveness(node)

    async def list_liveness(self) -> list[LivenessRecord]:
        return await self._inner.list_liveness()


async def test_a_watch_event_moving_an_object_to_another_node_drops_it(lab: Any, tmp_path: Path) -> None:
    node = lab.nodes[0]
    db = tmp_path / "datastore.db"
    async with EmbeddedDatastore(db) as inner, EmbeddedDatastore(db) as user:
        await user.create(node_status("moving", node.name, ["Agent"], QUIET_PERIOD))
        async with running_agent(
            EveryNode(inner), _collector(node), node=node.name, resync_seconds=600
        ) as agent:
            await wait_for(lambda: _status(user, "moving", {NodeStatusClass.AGENT}), 10, "status written")
            await _respec(user, "moving", node=ELSEWHERE)
            await user.create(node_status("after", node.name, ["Agent"], QUIET_PERIOD))
            # Events are applied in order: once the later one is, the move has been too.
            await wait_for(_tracks(agent, lambda names: "after" in names), 10, "the later event applied")
            assert agent.snapshot().objects == ("after",)


async def test_a_relist_keeps_only_this_nodes_objects(lab: Any, tmp_path: Path) -> None:
    node = lab.nodes[0]
    db = tmp_path / "datastore.db"
    async with EmbeddedDatastore(db) as inner, EmbeddedDatastore(db) as user:
        await user.create(node_status("mine", node.name, ["Agent"], QUIET_PERIOD))
        await user.create(node_status("theirs", ELSEWHERE, ["Agent"], 1))
        store = EveryNode(inner, events=False)
        async with running_agent(store, _collector(node), node=node.name, resync_seconds=0.5) as agent:
            assert agent.snapshot().objects == ("mine",)
            await wait_for(lambda: _status(user, "mine", {NodeStatusClass.AGENT}), 10, "status written")
            await _respec(user, "mine", node=ELSEWHERE)
            await wait_for(_tracks(agent, lambda names: not names), 10, "the moved object dropped")
        assert (await user.get("theirs")).status.last_updated is None, "another node's object written"


@pytest.mark.etcd
async def test_an_object_moved_behind_the_watch_is_dropped_on_its_write_conflict(
    lab: Any, etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Calico's own tools rewrite the object in etcd without this backend's per-node index, so
    the node's watch sees nothing (and no re-list comes: 10 minutes). The agent's next write
    conflicts; its re-read finds the object on another node and drops it."""
    caplog.set_level(logging.INFO, logger="calico_nodestatus")
    node = lab.nodes[0]
    config = DatastoreConfig.from_env(environ=etcd.datastore_env())
    async with open_datastore(config) as store, open_datastore(config) as user:
        await user.create(node_status("moved", node.name, ["Agent", "Routes"], 1))
        async with running_agent(store, _collector(node), node=node.name, resync_seconds=600) as agent:
            await wait_for(lambda: _status(user, "moved", {NodeStatusClass.ROUTES}), 10, "status written")
            key = object_key("moved")
            value = json.loads(etcd.etcdctl("get", "--print-value-only", key))
            value["spec"]["node"] = ELSEWHERE
            etcd.etcdctl("put", key, input_text=json.dumps(value, separators=(",", ":")))
            lab.set_routes(node.index, 1)  # BIRD's answer changes: the agent has a status to write
            await wait_for(_tracks(agent, lambda names: not names), 10, "the moved object dropped")
    assert f'reason="spec.node moved to {ELSEWHERE}"' in caplog.text
    assert "event=write_conflict name=moved" in caplog.text
