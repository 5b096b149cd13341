"""A20: spec changes are told by content, not `generation`. Calico's own tools write etcd values
without a generation and never bump it, so an agent following upstream's rule (forward a spec
only when its generation grew) would ignore their edits for good. Real etcd, real BIRD lab, the
object and its edit written the way libcalico-go writes them (etcdctl put of the bare value)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.etcd import EtcdDatastore
from tests.plugins.agent import agent_running, wait_for
from tests.plugins.etcd import EtcdServer

pytestmark = [pytest.mark.lab, pytest.mark.etcd]

NAME = "written-by-calicoctl"
KEY = f"/calico/resources/v3/projectcalico.org/caliconodestatuses/{NAME}"
# Far longer than the test: any report after the first one comes from the spec edit alone.
PERIOD = 3600
# The etcd backend's node-scoped watch follows its own per-node index, which Calico's tools do not
# write; their edits reach the agent at its next re-list, made short here.
RESYNC_SECONDS = 1.0


def _calico_value(node: str, classes: list[str]) -> dict[str, Any]:
    return {
        "kind": "CalicoNodeStatus",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": NAME, "uid": "4c8f4e2e-9d0b-4a59-a0b4-9b1a3c2d1e0f",
                     "creationTimestamp": "2021-10-18T13:22:00Z"},
        "spec": {"node": node, "classes": classes, "updatePeriodSeconds": PERIOD},
    }  # fmt: skip


def _stored(etcd: EtcdServer) -> dict[str, Any]:
    return json.loads(etcd.etcdctl("get", KEY, "--print-value-only"))


@asynccontextmanager
async def _agent(etcd: EtcdServer, node: Any) -> AsyncIterator[NodeStatusAgent]:
    datastore = EtcdDatastore(DatastoreConfig.from_env(environ=etcd.datastore_env()))
    settings = AgentSettings(
        node=node.name, holder=f"test/{node.name}", heartbeat_seconds=0.5, liveness_ttl_seconds=1.5,
        resync_seconds=RESYNC_SECONDS,
    )  # fmt: skip
    collector = bird_collector(str(node.socket_v4), str(node.socket_v6))
    try:
        async with agent_running(datastore, settings, collector) as agent:
            yield agent
    finally:
        await datastore.close()


async def test_spec_edit_without_a_generation_bump_reaches_the_agent(lab: Any, etcd: EtcdServer) -> None:
    node = lab.nodes[0]
    etcd.etcdctl("put", KEY, json.dumps(_calico_value(node.name, ["Agent"])))
    async with _agent(etcd, node):

        async def reported(section: str, field: str) -> dict[str, Any] | None:
            value = _stored(etcd)
            return value if value.get("status", {}).get(section, {}).get(field) else None

        first = await wait_for(lambda: reported("agent", "birdV4"), 20, "first report")
        assert "peersV4" not in first["status"]["bgp"]
        # calicoctl's edit: the whole value rewritten, classes changed, still no generation.
        edited = first | {"spec": first["spec"] | {"classes": ["Agent", "BGP"]}}
        etcd.etcdctl("put", KEY, json.dumps(edited))
        after = await wait_for(lambda: reported("bgp", "peersV4"), 20, "BGP section after the spec edit")
    assert after["status"]["bgp"]["numberEstablishedV4"] == 2
    assert after["spec"]["classes"] == ["Agent", "BGP"]
    assert "generation" not in after["metadata"]  # the agent's status writes keep it absent
