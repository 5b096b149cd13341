"""Fixtures: the replay API server, a kubeconfig pointing at it, and datastores built from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import yaml

from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.kubernetes import KubernetesDatastore
from tests.kubernetes.apiserver import ReplayApiServer, RunningServer

TOKEN = "replay-token"


@pytest.fixture
def apiserver() -> Iterator[ReplayApiServer]:
    server = RunningServer()
    try:
        yield server.state
    finally:
        server.stop()
    assert not server.state.unexpected, f"requests without a scripted reply: {server.state.unexpected}"


@pytest.fixture
def kubeconfig(apiserver: ReplayApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "replay", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "agent", "user": {"token": TOKEN}}],
        "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "agent"}}],
        "current-context": "replay",
    }
    path.write_text(yaml.safe_dump(config))
    return path


DatastoreFactory = Callable[..., Awaitable[KubernetesDatastore]]


@pytest.fixture
async def open_datastore(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DatastoreFactory]:
    """Builds datastores on the replay server; `api_version=None` leaves the choice to discovery."""
    monkeypatch.delenv("CALICO_API_GROUP", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    opened: list[KubernetesDatastore] = []

    async def factory(
        api_version: str | None = "crd.projectcalico.org/v1", **kwargs: str
    ) -> KubernetesDatastore:
        store = KubernetesDatastore(
            DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig), api_version=api_version, **kwargs
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()
