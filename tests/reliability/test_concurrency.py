"""Concurrency with the real agent on a real embedded datastore (BIRD: the transcript replay).

- A user edits spec.classes and updatePeriodSeconds 1,000 times while the agent writes status:
  no edit is lost (compare-and-swap on both sides; the agent's status writes never carry a spec),
  and the status follows the last spec within one period.
- Two agents for the same node by mistake: no write storm. Both collect the same BIRD data; a
  write happens only when the stored content differs, so after one of them writes, the other's
  compare-and-swap conflicts, it re-reads, finds the same content and skips."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.stale import COLLECTION_ERRORS_ANNOTATION
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Conflict, Datastore
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.faults.replay import Fault, ReplayServer
from tests.plugins.agent import node_status, wait_for
from tests.reliability.conftest import NODE, replay_collector, running_agent

EDITS = 1000
CLASS_SETS = [
    [NodeStatusClass.AGENT],
    [NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP, NodeStatusClass.ROUTES],
    [NodeStatusClass.ROUTES],
    [NodeStatusClass.AGENT, NodeStatusClass.BGP],
]


async def _edit(store: Datastore, name: str, classes: list[NodeStatusClass], period: int) -> CalicoNodeStatus:
    """A user's read-modify-write, retried on conflict as kubectl/calicoctl do."""
    while True:
        obj = await store.get(name)
        obj.spec.classes = list(classes)
        obj.spec.update_period_seconds = period
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
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    async with EmbeddedDatastore(tmp_path / "db") as store, EmbeddedDatastore(tmp_path / "db") as user:
        await user.create(node_status("edited", NODE, ["Agent"], 1))
        async with running_agent(store, replay_collector(replayed_bird)) as agent:
            last: CalicoNodeStatus | None = None
            for i, classes in zip(range(EDITS), itertools.cycle(CLASS_SETS), strict=False):
                last = await _edit(user, "edited", classes, 1 + i % 3)
                await asyncio.sleep(0.002)  # a fast user, yet the agent gets to collect and write
            assert last is not None
            final_classes = set(last.spec.classes)
            final_period = last.spec.update_period_seconds

            async def follows_last_spec() -> bool:
                stored = await user.get("edited")
                return _sections(stored) == final_classes

            await wait_for(follows_last_spec, final_period + 2, "status following the last spec")
            counters = agent.snapshot().counters
        stored = await user.get("edited")
    assert set(stored.spec.classes) == final_classes
    assert stored.spec.update_period_seconds == final_period
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

            replayed_bird[0].fault = Fault.CUT  # one real change: bird's `show route` fails

            async def changed() -> Any:
                # The last good routes are kept, and the object says they are stale.
                obj = await one.get("twice")
                marked = COLLECTION_ERRORS_ANNOTATION in obj.metadata.annotations
                return obj if marked and obj.status.routes == before.status.routes else None

            after = await wait_for(changed, 3, "the change written")
            await asyncio.sleep(3)
            settled = await one.get("twice")
            writes = first.snapshot().counters.writes + second.snapshot().counters.writes
        assert settled.metadata.resource_version == after.metadata.resource_version, "no flapping"
        # Two fills and two changes at most: each agent writes a given content at most once.
        assert writes <= 4
