"""Fixtures for the agent's end-to-end tests: one real BIRD lab shared by the session, a datastore
per test (embedded by default, the same tests on a real etcd and on the real kube-apiserver),
agents in-process or as processes.

On Kubernetes the test itself works as the cluster admin (``store``), while agents authenticate as
the DaemonSet's ServiceAccount with the RBAC of deploy/ applied as shipped (``agent_env``), so a
request the shipped rules do not allow fails here as it would on a cluster."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.plugins.agent import agent_argv, agent_running, embedded_env, node_status, wait_for  # noqa: F401 - the suite imports them here
from tests.plugins.kubernetes import AGENT_NAMESPACE, clean_kubernetes
from tests.plugins.lab import built_lab

HEARTBEAT_SECONDS = 0.5
STOP_WITHIN_SECONDS = 2.0  # the bound for SIGTERM; an in-process stop() keeps it too


@pytest.fixture(scope="session")
def agent_lab() -> Iterator[Any]:
    """3 nodes, BIRD 1.6 (bird + bird6, like calico-node), IPv4 and IPv6, all sessions up."""
    with built_lab("1.6", nodes=3, ipv6=True) as lab:
        yield lab


@pytest.fixture
def lab(agent_lab: Any) -> Iterator[Any]:
    """The shared lab, put back the way tests found it: every BIRD running, no extra routes."""
    yield agent_lab
    for node in agent_lab.nodes:
        for family in (4, 6):
            agent_lab.bird_start(node.index, family)
        if node.state.extra_routes_v4:
            agent_lab.set_routes(node.index, 0)
    agent_lab.wait_established(timeout=60)


# The datastore of every end-to-end test: embedded, or etcd / kubernetes with AGENT_E2E_DATASTORE
# (one flag runs them all there). The core tests (`on_every_datastore`) always run on all three.
DATASTORES = ("embedded", "etcd", "kubernetes")
DEFAULT_DATASTORE = os.environ.get("AGENT_E2E_DATASTORE", "embedded")
on_every_datastore = pytest.mark.parametrize(
    "datastore_env",
    [
        "embedded",
        pytest.param("etcd", marks=pytest.mark.etcd),
        pytest.param("kubernetes", marks=pytest.mark.kubernetes),
    ],
    indirect=True,
)


@pytest.fixture
def datastore_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """How the test reaches the datastore (with full rights), as the environment the CLI reads."""
    kind = getattr(request, "param", DEFAULT_DATASTORE)
    if kind not in DATASTORES:
        pytest.fail(f"AGENT_E2E_DATASTORE: expected one of {', '.join(DATASTORES)}, got {kind!r}")
    if kind == "etcd":
        yield request.getfixturevalue("etcd").datastore_env()
    elif kind == "kubernetes":
        plane: ControlPlane = request.getfixturevalue("control_plane")
        yield {
            "DATASTORE_TYPE": "kubernetes",
            "KUBECONFIG": str(plane.admin_kubeconfig),
            "CALICO_API_GROUP": V1_API_VERSION,
        }
        clean_kubernetes(plane)
    else:
        yield embedded_env(tmp_path / "datastore.db")


@pytest.fixture
def agent_env(request: pytest.FixtureRequest, datastore_env: dict[str, str]) -> dict[str, str]:
    """How agents reach the same datastore: on Kubernetes as the DaemonSet's ServiceAccount."""
    if datastore_env["DATASTORE_TYPE"] != "kubernetes":
        return datastore_env
    kubeconfig: Path = request.getfixturevalue("agent_kubeconfig")
    return datastore_env | {"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": AGENT_NAMESPACE}


@pytest.fixture
async def store(datastore_env: dict[str, str]) -> AsyncIterator[Datastore]:
    async with open_datastore(DatastoreConfig.from_env(environ=datastore_env)) as datastore:
        yield datastore


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def agent_factory(agent_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``start(node, size_budget=None, in_process=True)``: an agent for a lab node.

    In-process agents are async context managers (yield the NodeStatusAgent); process agents
    are started with ``python -m calico_nodestatus agent`` and always stopped at teardown."""
    processes: list[AgentProcess] = []

    @asynccontextmanager
    async def in_process_agent_cm(
        node: Any, size_budget: int | None = None
    ) -> AsyncIterator[NodeStatusAgent]:
        from calico_nodestatus.agent.collection import bird_collector

        settings = AgentSettings(
            node=node.name,
            holder=f"test/{node.name}",
            heartbeat_seconds=HEARTBEAT_SECONDS,
            liveness_ttl_seconds=3 * HEARTBEAT_SECONDS,
            # Far beyond any test: a re-list must not cover for an event the watch failed to deliver.
            resync_seconds=60.0,
            **({"size_budget_bytes": size_budget} if size_budget else {}),
        )
        sockets = (str(node.socket_v4), str(node.socket_v6) if node.socket_v6 else None)
        collector = bird_collector(*sockets)
        async with (
            open_datastore(DatastoreConfig.from_env(environ=agent_env)) as datastore,
            agent_running(datastore, settings, collector, stop_within=STOP_WITHIN_SECONDS) as agent,
        ):
            yield agent

    def as_process(node: Any) -> AgentProcess:
        log = tmp_path / f"agent-{node.name}-{len(processes)}.log"
        argv = agent_argv(
            node.name,
            node.socket_v4,
            node.socket_v6,
            "--heartbeat-seconds",
            str(HEARTBEAT_SECONDS),
            # No exporter: its fixed default port may be taken by any other agent on this machine.
            "--metrics-port",
            "0",
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **agent_env}
            )
        started = AgentProcess(process, log)
        processes.append(started)
        return started

    def start(node: Any, size_budget: int | None = None, in_process: bool = True) -> Any:
        return in_process_agent_cm(node, size_budget) if in_process else as_process(node)

    yield start
    for started in processes:
        if started.process.poll() is None:
            started.process.send_signal(signal.SIGKILL)
            started.process.wait(5)
