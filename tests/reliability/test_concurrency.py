"""Concurrency with the real agent on a real datastore, collecting from the lab's real BIRD 1.6.

- A user edits the spec 1,000 times while the agent writes status, on the embedded datastore and
  on etcd: each edit changes spec.classes and adds 1 to updatePeriodSeconds, so an edit the
  agent's status write overwrote (a lost compare-and-swap, on either side) shows in the final
  count, not only the last one; and the status follows the last spec.
- Two agents for the same node by mistake: no write storm. Both collect the same BIRD data; a
  write happens only when the stored content differs, so after one of them writes, the other's
  compare-and-swap conflicts, it re-reads, finds the same content and skips."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import Collector, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Conflict, Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.lab import Lab
from calico_nodestatus.lab.lab import LabNode
from tests.plugins.agent import node_status, wait_for
from tests.plugins.etcd import EtcdServer
from tests.reliability.conftest import running_agent

EDITS = 1000
CLASS_SETS = [
    [NodeStatusClass.AGENT],
    [NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP],
]


@pytest.fixture
def bird(lab_mesh_bird16: Lab) -> Iterator[LabNode]:
    """Node 1 of the shared BIRD 1.6 lab (bird and bird6), without extra routes afterwards."""
    node = lab_mesh_bird16.nodes[0]
    yield node
    if node.state.extra_routes_v4:
        lab_mesh_bird16.set_routes(node.index, 0)


def _collector(node: LabNode) -> Collector:
    return bird_collector(str(node.socket_v4), str(node.socket_v6))


async def _filled(store: Datastore, name: str) -> CalicoNodeStatus | None:
    obj = await store.get(name)
    return obj if _sections(obj) == set(NodeStatusClass) else None


@pytest.fixture(params=["embedded", pytest.param("etcd", marks=pytest.mark.etcd)])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Datastore, Datastore]]:
    """The agent's datastore and a user's, two clients of one real datastore."""
    if request.param == "etcd":
        server: EtcdServer = request.getfixturevalue("etcd")
        config = DatastoreConfig.from_env(environ=server.datastore_env())
        async with open_datastore(config) as store, open_datastore(config) as user:
            yield store, user
    else:
        async with EmbeddedDatastore(tmp_path / "db") as store, EmbeddedDatastore(tmp_path / "db") as user:
            yield store, user


async def _edit(store: Datastore, name: str, classes: list[NodeStatusClass]) -> CalicoNodeStatus:
    """A user's read-modify-write, retried on conflict as kubectl/calicoctl do: new classes and
    the period one more than the stored one."""
    while True:
        obj = await store.get(name)
        obj.spec.classes = list(classes)
        obj.spec.update_period_seconds += 1
        try:
            return await store.update(obj)
        except Conflict:
            continue


def _sections(obj: CalicoNodeStatus) -> set[NodeStatusClass]:
    status = obj.status
    present = {
        NodeStatusClass.AGENT: status.agent.bird_v4.state is not None,
        NodeStatusClass.BGP: bool(status.bgp.peers_v4),
        NodeStatusClass.ROUTES: bool(status.routes.routes_v4),
    }
    return {cls for cls, there in present.items() if there}


@pytest.mark.slow
async def test_1000_spec_edits_while_the_agent_writes(
    bird: LabNode, stores: tuple[Datastore, Datastore]
) -> None:
    store, user = stores
    await user.create(node_status("edited", bird.name, ["Agent"], 1))
    async with running_agent(store, _collector(bird), node=bird.name) as agent:
        last: CalicoNodeStatus | None = None
        for classes in itertools.islice(itertools.cycle(CLASS_SETS), EDITS):
            last = await _edit(user, "edited", classes)
            await asyncio.sleep(0.002)  # a fast user, yet the agent gets to collect and write
        assert last is not None
        final_classes = set(last.spec.classes)

        async def follows_last_spec() -> bool:
            stored = await user.get("edited")
            return _sections(stored) == final_classes

        # A spec change is collected for at once, whatever its period.
        await wait_for(follows_last_spec, 10, "status following the last spec")
        counters = agent.snapshot().counters
    stored = await user.get("edited")
    assert set(stored.spec.classes) == final_classes
    assert stored.spec.update_period_seconds == 1 + EDITS, "edits lost"
    # The agent really raced the user: it wrote between edits and lost compare-and-swaps to them.
    # (A status collected for a spec that changed before the writer got to it is not written.)
    assert counters.writes > 0 and counters.write_conflicts > 10


def _collections(*agents: NodeStatusAgent) -> list[int]:
    return [agent.snapshot().counters.collections for agent in agents]


@pytest.mark.slow
async def test_two_agents_for_one_node_converge_without_a_write_storm(
    bird: LabNode, lab_mesh_bird16: Lab, tmp_path: Path
) -> None:
    async with EmbeddedDatastore(tmp_path / "db") as one, EmbeddedDatastore(tmp_path / "db") as two:
        await one.create(node_status("twice", bird.name, ["Agent", "BGP", "Routes"], 1))
        async with (
            running_agent(one, _collector(bird), node=bird.name, holder="host-a/1") as first,
            running_agent(two, _collector(bird), node=bird.name, holder="host-b/2") as second,
        ):

            async def routes(count: int) -> CalicoNodeStatus | None:
                obj = await one.get("twice")
                return obj if len(obj.status.routes.routes_v4) == count else None

            async def collected_four_more(since: list[int]) -> bool:
                return all(
                    now >= then + 4 for now, then in zip(_collections(first, second), since, strict=True)
                )

            before = await wait_for(lambda: _filled(one, "twice"), 10, "status filled")
            counted = _collections(first, second)
            await wait_for(lambda: collected_four_more(counted), 20, "four collections by each agent")
            quiet = await one.get("twice")
            assert quiet.metadata.resource_version == before.metadata.resource_version, "rewrites"

            table = len(quiet.status.routes.routes_v4)
            lab_mesh_bird16.set_routes(bird.index, 1)  # one real change in BIRD's answer: a route more
            after = await wait_for(lambda: routes(table + 1), 10, "the change written")
            counted = _collections(first, second)
            await wait_for(lambda: collected_four_more(counted), 20, "four more collections by each agent")
            settled = await one.get("twice")
            writes = first.snapshot().counters.writes + second.snapshot().counters.writes
        assert settled.metadata.resource_version == after.metadata.resource_version, "no flapping"
        # Two fills and two changes at most: each agent writes a given content at most once.
        assert writes <= 4
