"""Shared parts of the tests that run the real agent: a status object to create, polling until a
condition holds, the replayed BIRD pair (bird + bird6, like calico-node), and the agent started as a
real process (`python -m calico_nodestatus agent`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.agent.runner import AgentSettings, Collector, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus, CalicoNodeStatusSpec, NodeStatusClass, ObjectMeta
from calico_nodestatus.datastore.base import Datastore
from tests.faults.replay import ReplayServer, replaying

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 5.0  # how long a process agent gets after SIGTERM at teardown before SIGKILL


def node_status(name: str, node: str, classes: list[str], period: int) -> CalicoNodeStatus:
    return CalicoNodeStatus(
        metadata=ObjectMeta(name=name),
        spec=CalicoNodeStatusSpec(
            node=node, classes=[NodeStatusClass(c) for c in classes], update_period_seconds=period
        ),
    )


async def wait_for(
    probe: Callable[[], Awaitable[Any]],
    within: float,
    what: str,
    interval: float = 0.1,
    explain: Callable[[], str] = lambda: "",
) -> Any:
    """Polls until `probe` returns something truthy; fails naming `what` after `within` seconds
    (with `explain()`, e.g. an agent process's log)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"{what} not reached within {within}s (last: {last!r})\n{explain()}")


def embedded_env(db: Path) -> dict[str, str]:
    """The environment that points the CLI (and the agent) at the embedded datastore in `db`."""
    return {"DATASTORE_TYPE": "embedded", "CALICO_NODESTATUS_DB": str(db)}


@pytest.fixture
async def replayed_bird(tmp_path: Path) -> AsyncIterator[tuple[ReplayServer, ReplayServer]]:
    """`bird` (IPv4) and `bird6` (IPv6) replaying the real mesh3 transcripts, faults set per test."""
    async with (
        replaying(tmp_path / "bird.ctl") as v4,
        replaying(tmp_path / "bird6.ctl", prefix="bird6__") as v6,
    ):
        yield v4, v6


def agent_argv(
    node: str,
    bird_socket: Path | str,
    bird6_socket: Path | str | None,
    *options: str,
    log_level: str = "info",
) -> list[str]:
    """The agent's command line for `node`, reading BIRD at the given control sockets."""
    argv = [
        sys.executable, "-m", "calico_nodestatus", "--log-level", log_level, "agent",
        "--node", node, "--bird-socket", str(bird_socket),
    ]  # fmt: skip
    if bird6_socket is not None:
        argv += ["--bird6-socket", str(bird6_socket)]
    return [*argv, *options]


@asynccontextmanager
async def agent_process(
    argv: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`argv` running with `env` added to this environment, its output in `log`; stopped with
    SIGTERM (then SIGKILL) when the block ends, unless the test stopped it itself."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, stdout=out, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()


@asynccontextmanager
async def agent_running(
    datastore: Datastore,
    settings: AgentSettings,
    collector: Collector,
    *,
    ready_within: float = 10.0,
    stop_within: float = 5.0,
) -> AsyncIterator[NodeStatusAgent]:
    """The real agent on `datastore`, running in this event loop from its first list (ready) until
    the block ends; it must stop within `stop_within` seconds."""
    agent = NodeStatusAgent(datastore, settings, collector)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), ready_within)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, stop_within)
