"""The `datastore` fixture: one real backend per parameter, empty at the start of each test.

- embedded: a fresh SQLite file in tmp_path.
- etcdv3: the session's real etcd server (tests/plugins/etcd.py), /calico/ keys removed afterwards.
- kubernetes: only when KUBECONFIG points at a reachable cluster (tests/plugins/kubernetes.py); every
  object is deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from tests.plugins.etcd import EtcdServer


def make_status(
    name: str = "status-a", node: str = "node-1", period: int = 10, **spec: Any
) -> CalicoNodeStatus:
    return CalicoNodeStatus.from_wire(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "CalicoNodeStatus",
            "metadata": {"name": name},
            "spec": {"node": node, "classes": ["Agent", "BGP"], "updatePeriodSeconds": period, **spec},
        }
    )


async def _delete_all(datastore: Datastore) -> None:
    objects, _ = await datastore.list()
    for obj in objects:
        await datastore.delete(obj.name)


@pytest.fixture(params=["embedded", "etcdv3", "kubernetes"])
async def datastore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    backend: Datastore
    if request.param == "embedded":
        backend = EmbeddedDatastore(tmp_path / "datastore.db")
    elif request.param == "etcdv3":
        server: EtcdServer = request.getfixturevalue("etcd")
        backend = open_datastore(DatastoreConfig.from_env(environ=server.datastore_env()))
    else:
        reason: str | None = request.getfixturevalue("kubernetes_unavailable")
        if reason:
            pytest.skip(reason)
        backend = open_datastore(DatastoreConfig.from_env(type="kubernetes"))
        await _delete_all(backend)
    try:
        yield backend
    finally:
        if request.param == "kubernetes":
            await _delete_all(backend)
        await backend.close()


async def collect(events: AsyncIterator[Any], count: int, within: float = 5.0) -> list[Any]:
    """The next `count` items of an async iterator, failing if they do not arrive in time."""
    return [await asyncio.wait_for(anext(events), within) for _ in range(count)]


async def nothing_more(events: AsyncIterator[Any], wait: float = 0.4) -> bool:
    """True when no further item arrives within `wait` seconds."""
    try:
        await asyncio.wait_for(anext(events), wait)
    except TimeoutError:
        return True
    return False


async def eventually(check: Callable[[], Awaitable[bool]], within: float, interval: float = 0.1) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return await check()
