"""Real kube-apiserver faults with the agent running as the DaemonSet's ServiceAccount: a stale
resourceVersion (a real 409), etcd compaction expiring the agent's watch (a real 410) while it is
cut off, and a kube-apiserver restart in the middle of a run. BIRD is the lab's real pair: these
tests are about the datastore, and the lab changes BIRD's answer on demand (routes loaded).

(An identity without the `/status` permission is tests/agent/test_agent_rbac.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.agent.runner import NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION, KubernetesDatastore
from calico_nodestatus.lab import Lab
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.faults.tcp_relay import TcpRelay, tcp_relay
from tests.plugins.agent import node_status, wait_for
from tests.plugins.etcd import free_port
from tests.plugins.kubernetes import AGENT_NAMESPACE, clean_kubernetes
from tests.reliability.conftest import NODE, lab_collector, running_agent

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

ALL = ["Agent", "BGP", "Routes"]
ROUTES_ADDED = 3


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[Datastore]:
    config = DatastoreConfig(type="kubernetes", kubeconfig=control_plane.admin_kubeconfig)
    async with KubernetesDatastore(config, api_version=V1_API_VERSION) as store:
        yield store
    clean_kubernetes(control_plane)


def agent_datastore(kubeconfig: Path) -> KubernetesDatastore:
    config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig, kube_api_group=V1_API_VERSION)
    return KubernetesDatastore(config, namespace=AGENT_NAMESPACE)


async def respec(store: Datastore, name: str, classes: list[NodeStatusClass]) -> CalicoNodeStatus:
    obj = await store.get(name)
    return await store.update(
        obj.model_copy(update={"spec": obj.spec.model_copy(update={"classes": classes})})
    )


def bgp_only(store: Datastore, name: str) -> Any:
    async def probe() -> bool:
        status = (await store.get(name)).status
        return (
            status.bgp.number_established_v4 == 2
            and not status.routes.routes_v4
            and status.agent.bird_v4.state is None
        )

    return probe


class SpecEditedBeforeTheFirstWrite(KubernetesDatastore):
    """The agent's datastore, with a user's real spec edit slipped in right before the agent's
    first status write: that write carries a stale resourceVersion and gets the server's 409."""

    def __init__(self, kubeconfig: Path, admin: Datastore) -> None:
        config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig, kube_api_group=V1_API_VERSION)
        super().__init__(config, namespace=AGENT_NAMESPACE)
        self._admin: Datastore | None = admin

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await respec(admin, obj.name, [NodeStatusClass.BGP])
        return await super().update_status(obj)


async def test_a_stale_resource_version_gets_409_and_the_agent_writes_for_the_new_spec(
    admin: Datastore, agent_kubeconfig: Path, bird_mesh: Lab
) -> None:
    await admin.create(node_status("stale", NODE, ALL, 1))
    async with (
        SpecEditedBeforeTheFirstWrite(agent_kubeconfig, admin) as store,
        running_agent(store, lab_collector(bird_mesh)) as agent,
    ):
        # The stale write was refused; the agent re-read, saw the new spec and reported for it.
        await wait_for(bgp_only(admin, "stale"), 15, "the status of the user's new spec")
        assert agent.snapshot().counters.write_conflicts >= 1
        assert agent.snapshot().counters.write_errors == 0
    assert (await admin.get("stale")).spec.classes == [NodeStatusClass.BGP]  # the edit survived


def relayed_kubeconfig(kubeconfig: Path, port: int, path: Path) -> Path:
    """`kubeconfig` with the server moved to the relay's port (same address, same certificate)."""
    document = yaml.safe_load(kubeconfig.read_text())
    server = document["clusters"][0]["cluster"]["server"]
    document["clusters"][0]["cluster"]["server"] = f"{server.rsplit(':', 1)[0]}:{port}"
    path.write_text(yaml.safe_dump(document))
    return path


@asynccontextmanager
async def agent_behind_a_relay(
    plane: ControlPlane, kubeconfig: Path, bird: Lab, tmp_path: Path
) -> AsyncIterator[tuple[NodeStatusAgent, TcpRelay]]:
    """The agent reaching the apiserver through a relay that can be cut; resync is 10 minutes, so
    only the watch (or the re-list after its expiry) delivers changes."""
    apiserver_port = int(plane.server.rsplit(":", 1)[1])
    async with tcp_relay(free_port(), apiserver_port) as relay:
        relayed = relayed_kubeconfig(kubeconfig, relay.port, tmp_path / "relayed.kubeconfig")
        async with (
            agent_datastore(relayed) as store,
            running_agent(store, lab_collector(bird), resync_seconds=600) as agent,
        ):
            yield agent, relay


def logged(caplog: pytest.LogCaptureFixture, event: str, name: str) -> int:
    return sum(
        1 for r in caplog.records if f"event={event}" in r.getMessage() and f"name={name}" in r.getMessage()
    )


async def test_compaction_expires_the_agents_watch_and_the_relist_loses_and_duplicates_nothing(
    admin: Datastore,
    control_plane: ControlPlane,
    agent_kubeconfig: Path,
    bird_mesh: Lab,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cut off, the agent misses: two spec changes of one object, a new object, a deleted one.
    etcd is compacted past its revision and the apiserver restarted (its watch cache rebuilt from
    etcd), so the resumed watch gets a 410. The re-list must bring each change exactly once: the
    last spec, the new object added once, the deleted one dropped once."""
    caplog.set_level("INFO", logger="calico_nodestatus")
    for name in ("kept", "removed"):
        await admin.create(node_status(name, NODE, ["Agent"], 60))
    async with agent_behind_a_relay(control_plane, agent_kubeconfig, bird_mesh, tmp_path) as (
        agent,
        relay,
    ):

        async def reported() -> bool:
            return all(
                [(await admin.get(n)).status.agent.bird_v4.state == "Ready" for n in ("kept", "removed")]
            )

        await wait_for(reported, 15, "first reports")
        await relay.cut()
        await respec(admin, "kept", [NodeStatusClass.AGENT, NodeStatusClass.ROUTES])
        await respec(admin, "kept", [NodeStatusClass.BGP])
        await admin.create(node_status("added", NODE, ["BGP"], 60))
        await admin.delete("removed")
        control_plane.compact_etcd()
        control_plane.restart_apiserver()
        await relay.restore()
        await wait_for(bgp_only(admin, "kept"), 30, "the last spec applied after the re-list")

        async def added_reported() -> bool:
            return (await admin.get("added")).status.bgp.number_established_v4 == 2

        await wait_for(added_reported, 15, "the object created meanwhile reported")
        assert set(agent.snapshot().objects) == {"kept", "added"}
    messages = caplog.text
    assert "event=watch_expired" in messages
    assert logged(caplog, "object_added", "added") == 1
    assert logged(caplog, "spec_changed", "kept") == 1  # the last spec only, once
    assert logged(caplog, "object_dropped", "removed") == 1


async def test_an_apiserver_restart_mid_run_and_the_agent_recovers(
    admin: Datastore,
    control_plane: ControlPlane,
    agent_kubeconfig: Path,
    bird_mesh: Lab,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="calico_nodestatus")
    await admin.create(node_status("restart", NODE, ALL, 1))
    async with (
        agent_datastore(agent_kubeconfig) as store,
        running_agent(store, lab_collector(bird_mesh), resync_seconds=600) as agent,
    ):

        async def routes() -> int:
            return len((await admin.get("restart")).status.routes.routes_v4)

        before = await wait_for(routes, 15, "status filled")
        control_plane.stop_apiserver()
        bird_mesh.set_routes(1, ROUTES_ADDED)  # BIRD's answer changes while the apiserver is away

        async def outage_seen() -> bool:
            return not agent.snapshot().datastore_ok

        await wait_for(outage_seen, 15, "the agent noticing the apiserver gone")
        control_plane.start_apiserver()

        async def latest_written() -> bool:
            return await routes() == before + ROUTES_ADDED

        await wait_for(latest_written, 30, "the latest status written after the restart")
        # The watch came back too: a spec change made after the restart reaches the agent.
        await respec(admin, "restart", [NodeStatusClass.BGP])
        await wait_for(bgp_only(admin, "restart"), 15, "a spec change after the restart applied")

        async def healthy() -> bool:
            return agent.snapshot().datastore_ok

        await wait_for(healthy, 15, "the datastore reported ok again")
    assert "event=watch_failed" in caplog.text
