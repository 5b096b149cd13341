"""Concurrency with the real agent on a real datastore (BIRD: the transcript replay).

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Conflict, Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from tests.faults.replay import Fault, ReplayServer
from tests.plugins.agent import node_status, wait_for
from tests.plugins.etcd import EtcdServer
from tests.reliability.conftest import NODE, replay_collector, running_agent

EDITS = 1000
CLASS_SETS = [
    [NodeStatusClass.AGENT],
    [NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP],
]


@pytest.fixture(params=["embedded", pytest.param("etcd", marks=pytest.mark.etcd)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Datastore, Datastore]]:
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
    replayed_bird: tuple[ReplayServer, ReplayServer], stores: tuple[Datastore, Datastore]
) -> None:
    store, user = stores
    await user.create(node_status("edited", NODE, ["Agent"], 1))
    async with running_agent(store, replay_collector(replayed_bird)) as agent:
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


@pytest.mark.slow
async def test_two_agents_for_one_node_converge_without_a_write_storm(
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    async with EmbeddedDatastore(tmp_path / "db") as one, EmbeddedDatastore(tmp_path / "db") as two:
        await one.create(node_status("twice", NODE, ["Agent", "BGP", "Routes"], 1))
        async with (
            running_agent(one, replay_collector(replayed_bird), holder="host-a/1") as first,
            running_agent(two, replay_collector(replayed_bird), holder="host-b/2") as second,
        ):

            async def filled() -> Any:
                obj = await one.get("twice")
                return obj if obj.status.routes.routes_v4 else None

            before = await wait_for(filled, 5, "status filled")
            await asyncio.sleep(4)  # four periods of both agents collecting the same data
            quiet = await one.get("twice")
            assert quiet.metadata.resource_version == before.metadata.resource_version, "rewrites"

            replayed_bird[0].fault = Fault.CUT  # one real change in BIRD's answer

            async def changed() -> Any:
                obj = await one.get("twice")
                return obj if not obj.status.routes.routes_v4 else None

            after = await wait_for(changed, 3, "the change written")
            await asyncio.sleep(3)
            settled = await one.get("twice")
            writes = first.snapshot().counters.writes + second.snapshot().counters.writes
        assert settled.metadata.resource_version == after.metadata.resource_version, "no flapping"
        # Two fills and two changes at most: each agent writes a given content at most once.
        assert writes <= 4
