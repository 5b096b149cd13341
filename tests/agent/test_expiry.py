"""The agent deletes an object once its expires-at annotation has passed, on the resourceVersion it
knows: an edit that lands between the agent's decision and its delete (a renewed expiry) makes the
delete conflict and the object survive. Real agent, real embedded datastore; the race is produced
on demand by slipping a real write in just before the agent's delete (the lab test covers the
plain expiry with BIRD and every datastore)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.api.annotations import EXPIRES_AT_ANNOTATION, format_expiry, parse_expiry
from calico_nodestatus.datastore.base import NotFound
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.agent.conftest import node_status, wait_for
from tests.plugins.agent import agent_running

NODE = "node-expiry"


def expiring(name: str, at: datetime | str) -> CalicoNodeStatus:
    obj = node_status(name, NODE, ["Agent"], 1)
    obj.metadata.annotations[EXPIRES_AT_ANNOTATION] = at if isinstance(at, str) else format_expiry(at)
    return obj


class RenewedMeanwhile(EmbeddedDatastore):
    """Before the agent's first delete, another client renews the object's expiry."""

    def __init__(self, path: Path, renew_to: datetime) -> None:
        super().__init__(path)
        self.renew_to = renew_to
        self.slipped = asyncio.Event()

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        if not self.slipped.is_set():
            current = await self.get(name)
            annotations = {
                **current.metadata.annotations,
                EXPIRES_AT_ANNOTATION: format_expiry(self.renew_to),
            }
            metadata = current.metadata.model_copy(update={"annotations": annotations})
            await self.update(current.model_copy(update={"metadata": metadata}))
            self.slipped.set()
        return await super().delete(name, resource_version)


@asynccontextmanager
async def running_agent(store: EmbeddedDatastore, tmp_path: Path) -> AsyncIterator[NodeStatusAgent]:
    settings = AgentSettings(node=NODE, holder="test/expiry", heartbeat_seconds=0.5)
    # No BIRD behind these sockets: collections fail (and are retried); expiry does not need BIRD.
    collector = bird_collector(str(tmp_path / "none.ctl"), str(tmp_path / "none6.ctl"))
    async with agent_running(store, settings, collector) as agent:
        yield agent


async def _gone(store: EmbeddedDatastore, name: str) -> bool:
    try:
        await store.get(name)
    except NotFound:
        return True
    return False


async def test_an_edit_just_before_the_delete_renews_the_object(tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    async with RenewedMeanwhile(tmp_path / "db", later) as store, running_agent(store, tmp_path):
        await store.create(expiring("renewed", datetime.now(UTC) + timedelta(seconds=1)))
        await asyncio.wait_for(store.slipped.wait(), 20)
        await store.create(expiring("canary", datetime.now(UTC)))  # expired: deleted on the next round
        await wait_for(lambda: _gone(store, "canary"), 20, "the expired canary deleted")
        renewed = await store.get("renewed")  # the conflicting delete did not take it
        assert parse_expiry(renewed.metadata.annotations[EXPIRES_AT_ANNOTATION]) == later


async def test_a_malformed_expiry_is_never_acted_on(tmp_path: Path) -> None:
    async with EmbeddedDatastore(tmp_path / "db") as store, running_agent(store, tmp_path):
        await store.create(expiring("malformed", "yesterday"))
        await store.create(expiring("canary", datetime.now(UTC)))
        await wait_for(lambda: _gone(store, "canary"), 20, "the expired canary deleted")
        assert (await store.get("malformed")).metadata.annotations[EXPIRES_AT_ANNOTATION] == "yesterday"
