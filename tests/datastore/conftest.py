"""The `datastore` fixture: one real backend per parameter, empty at the start of each test.

- embedded: a fresh SQLite file in tmp_path.
- etcdv3: the session's real etcd server (tests/plugins/etcd.py), /calico/ keys removed afterwards.
  Here the etcd servers are parametrised over both builds (Debian's 3.4 and the built 3.7), so the
  etcdv3 backend's own tests and its contract run on each.
- kubernetes-v1, kubernetes-v3: the session's real kube-apiserver (tests/plugins/kubernetes.py), as
  its admin, with objects in the `crd.projectcalico.org/v1` CRD (Calico's default) or the native
  `projectcalico.org/v3` one; every object and Lease is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION, V3_API_VERSION, KubernetesDatastore
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.plugins.etcd import CALICO_PREFIX, ETCD_BUILDS, EtcdServer, session_etcd
from tests.plugins.kubernetes import clean_kubernetes

KUBERNETES_MODES = {"kubernetes-v1": V1_API_VERSION, "kubernetes-v3": V3_API_VERSION}


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


@pytest.fixture(params=ETCD_BUILDS)
def etcd(request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    server = session_etcd(request, request.param)
    yield server
    server.etcdctl("del", "--prefix", CALICO_PREFIX)


@pytest.fixture(params=ETCD_BUILDS)
def etcd_tls_server(request: pytest.FixtureRequest) -> EtcdServer:
    return session_etcd(request, request.param, tls=True)


ETCD_KINDS = tuple(f"etcdv3-{build}" for build in ETCD_BUILDS)


@contextlib.asynccontextmanager
async def open_backend(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> AsyncIterator[Datastore]:
    """A real backend of `kind`, empty, cleaned up afterwards."""
    backend: Datastore
    plane: ControlPlane | None = None
    if kind == "embedded":
        backend = EmbeddedDatastore(tmp_path / "datastore.db")
    elif kind in ETCD_KINDS:
        server = session_etcd(request, kind.removeprefix("etcdv3-"))
        request.addfinalizer(lambda: server.etcdctl("del", "--prefix", CALICO_PREFIX))
        backend = open_datastore(DatastoreConfig.from_env(environ=server.datastore_env()))
    else:
        plane = request.getfixturevalue("control_plane")
        config = DatastoreConfig(type="kubernetes", kubeconfig=plane.admin_kubeconfig)
        backend = KubernetesDatastore(config, api_version=KUBERNETES_MODES[kind])
    try:
        yield backend
    finally:
        await backend.close()
        if plane is not None:
            clean_kubernetes(plane)


@pytest.fixture(params=["embedded", *ETCD_KINDS, *KUBERNETES_MODES])
async def datastore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    async with open_backend(request, request.param, tmp_path) as backend:
        yield backend


@pytest.fixture(params=["embedded", *ETCD_KINDS])
async def compactable_datastore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    """The backends that compact their own history on demand (``compact(revision)``); the
    Kubernetes API's watch expiry is tested on the real server in tests/kubernetes."""
    async with open_backend(request, request.param, tmp_path) as backend:
        yield backend


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
