"""Fixtures for the agent's end-to-end tests: one real BIRD lab shared by the session, a datastore
per test (embedded by default, the same tests on a real etcd), agents in-process or as processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus, CalicoNodeStatusSpec, NodeStatusClass, ObjectMeta
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig, open_datastore

LAB_NAME = "agente2e"
HEARTBEAT_SECONDS = 0.5


@pytest.fixture(scope="session")
def agent_lab() -> Iterator[Any]:
    """3 nodes, BIRD 1.6 (bird + bird6, like calico-node), IPv4 and IPv6, all sessions up."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the BIRD lab needs root and iproute2")
    from calico_nodestatus.lab.lab import Lab

    lab = Lab.up(LAB_NAME, nodes=3, bird="1.6", ipv6=True, owner_pid=os.getpid())
    try:
        yield lab
    finally:
        lab.down()


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


@pytest.fixture(params=["embedded", pytest.param("etcd", marks=pytest.mark.etcd)])
def datastore_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """How agents and the test reach the datastore, as the environment the CLI reads."""
    if request.param == "etcd":
        return request.getfixturevalue("etcd").datastore_env()
    return {"DATASTORE_TYPE": "embedded", "CALICO_NODESTATUS_DB": str(tmp_path / "datastore.db")}


@pytest.fixture
async def store(datastore_env: dict[str, str]) -> AsyncIterator[Datastore]:
    async with open_datastore(DatastoreConfig.from_env(environ=datastore_env)) as datastore:
        yield datastore


def node_status(name: str, node: str, classes: list[str], period: int) -> CalicoNodeStatus:
    return CalicoNodeStatus(
        metadata=ObjectMeta(name=name),
        spec=CalicoNodeStatusSpec(
            node=node, classes=[NodeStatusClass(c) for c in classes], update_period_seconds=period
        ),
    )


async def wait_for(
    probe: Callable[[], Awaitable[Any]], within: float, what: str, interval: float = 0.1
) -> Any:
    """Polls until `probe` returns something truthy; fails naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"{what} not reached within {within}s (last: {last!r})")


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def agent_factory(datastore_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
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
            resync_seconds=2.0,
            **({"size_budget_bytes": size_budget} if size_budget else {}),
        )
        sockets = (str(node.socket_v4), str(node.socket_v6) if node.socket_v6 else None)
        async with open_datastore(DatastoreConfig.from_env(environ=datastore_env)) as datastore:
            agent = NodeStatusAgent(datastore, settings, bird_collector(*sockets))
            task = asyncio.create_task(agent.run())
            try:
                await asyncio.wait_for(agent.ready.wait(), 10)
                yield agent
            finally:
                agent.stop()
                await asyncio.wait_for(task, 5)

    def as_process(node: Any) -> AgentProcess:
        log = tmp_path / f"agent-{node.name}-{len(processes)}.log"
        argv = [
            sys.executable,
            "-m",
            "calico_nodestatus",
            "--log-level",
            "info",
            "agent",
            "--node",
            node.name,
            "--bird-socket",
            str(node.socket_v4),
            "--heartbeat-seconds",
            str(HEARTBEAT_SECONDS),
        ]
        if node.socket_v6:
            argv += ["--bird6-socket", str(node.socket_v6)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **datastore_env}
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
