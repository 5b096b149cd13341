"""Shared parts of the reliability suite: the `--run-soak` switch and an in-process agent
(status objects and polling: tests/plugins/agent.py), reading the real BIRD pair of the lab
(`bird_mesh`, tests/plugins/lab.py) or, for BIRD faults, the replayed one (`replayed_bird`).

Soak tests (marker `soak`) run only with `--run-soak` (see `make soak`, which runs this directory;
their duration comes from the environment, e.g. SOAK_SECONDS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, Collector, NodeStatusAgent
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.lab import Lab
from tests.plugins.agent import agent_running

NODE = "node-1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-soak", action="store_true", default=False, help="run the long soak tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long-running soak test, only with --run-soak (make soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-soak", default=False):
        return
    skip = pytest.mark.skip(reason="soak test: run with --run-soak (make soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def lab_collector(lab: Lab, node: int = 1) -> Collector:
    """The agent's BIRD collector reading a lab node's real bird and bird6."""
    daemons = lab.node(node)
    return bird_collector(str(daemons.socket_v4), str(daemons.socket_v6))


@asynccontextmanager
async def running_agent(
    datastore: Datastore, collector: Collector, *, node: str = NODE, holder: str = "test/1", **settings: Any
) -> AsyncIterator[NodeStatusAgent]:
    """The real agent on `datastore`, running in this event loop until the block ends."""
    options: dict[str, Any] = {
        "heartbeat_seconds": 0.5,
        "liveness_ttl_seconds": 1.5,
        "datastore_timeout_seconds": 2.0,
        "resync_seconds": 5.0,
    } | settings
    settings_ = AgentSettings(node=node, holder=holder, **options)
    async with agent_running(datastore, settings_, collector, ready_within=30) as agent:
        yield agent
