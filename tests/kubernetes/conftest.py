"""Fixtures for the Kubernetes backend's tests on the session's real kube-apiserver
(tests/plugins/kubernetes.py): datastores as the cluster admin in either CRD mode, kubectl, the
CRD swapped for the shape Calico shipped before 2026 (no status subresource, no selectable
fields), and the scripted server kept for the faults a real apiserver cannot make on demand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.api.crd import build_crd
from calico_nodestatus.api.crd_v1 import CRD_V1_GROUP
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.kubernetes import PLURAL, V1_API_VERSION, KubernetesDatastore
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.kubernetes.apiserver import ReplayApiServer, RunningServer
from tests.plugins.kubernetes import clean_kubernetes

TOKEN = "replay-token"
V1_CRD_NAME = f"{PLURAL}.{CRD_V1_GROUP}"

DatastoreFactory = Callable[..., Awaitable[KubernetesDatastore]]


def resource(api_version: str) -> str:
    """kubectl's name for the CRD of a mode: `caliconodestatuses.<group>`."""
    return f"{PLURAL}.{api_version.split('/', maxsplit=1)[0]}"


def collection_path(api_version: str) -> str:
    return f"/apis/{api_version}/{PLURAL}"


def kubectl_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl(*args, "-o", "json").stdout)


def write_kubeconfig(path: Path, server: str, user: dict[str, str], ca_file: Path | None = None) -> Path:
    cluster: dict[str, str] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The session's control plane, every CalicoNodeStatus and Lease removed after the test."""
    yield control_plane
    clean_kubernetes(control_plane)


@pytest.fixture
async def open_store(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DatastoreFactory]:
    """Builds datastores on the real apiserver, as its admin unless another kubeconfig is given;
    `api_version=None` leaves the choice to discovery."""
    monkeypatch.delenv("CALICO_API_GROUP", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    opened: list[KubernetesDatastore] = []

    async def factory(
        api_version: str | None = V1_API_VERSION, kubeconfig: Path | None = None, **kwargs: str
    ) -> KubernetesDatastore:
        config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig or plane.admin_kubeconfig)
        store = KubernetesDatastore(config, api_version=api_version, **kwargs)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


def legacy_v1_crd() -> dict[str, Any]:
    """deploy/crd.yaml's v1 CRD as Calico shipped it before 2026: no status subresource and
    (like every Kubernetes before 1.31) no selectable fields."""
    crd = build_crd(CRD_V1_GROUP)
    for version in crd["spec"]["versions"]:
        del version["subresources"], version["selectableFields"]
    return crd


async def _until(probe: Callable[[], bool], what: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not probe():
        if loop.time() > deadline:
            pytest.fail(f"{what} not reached within {within}s")
        await asyncio.sleep(0.2)


def _serves_status(plane: ControlPlane, probe_name: str) -> bool:
    """Whether the apiserver's handler for the v1 CRD currently serves the /status subresource
    (a GET of it on an existing object answers, rather than 404)."""
    path = f"{collection_path(V1_API_VERSION)}/{probe_name}/status"
    return plane.kubectl("get", "--raw", path, check=False).returncode == 0


def _filters_on_node(plane: ControlPlane) -> bool:
    path = f"{collection_path(V1_API_VERSION)}?fieldSelector=spec.node%3Dx&limit=1"
    return plane.kubectl("get", "--raw", path, check=False).returncode == 0


async def set_v1_crd(plane: ControlPlane, crd: dict[str, Any], *, legacy: bool) -> None:
    """Applies `crd` and waits until the apiserver's handlers (not only the CRD object) serve it."""
    probe = "crd-shape-probe"
    plane.apply(
        f"apiVersion: {V1_API_VERSION}\nkind: CalicoNodeStatus\nmetadata: {{name: {probe}}}\n"
        "spec: {node: probe, classes: [Agent], updatePeriodSeconds: 10}\n"
    )
    plane.apply(yaml.safe_dump(crd))
    plane.wait_established([V1_CRD_NAME])
    await _until(
        lambda: _serves_status(plane, probe) != legacy and _filters_on_node(plane) != legacy,
        f"the apiserver serving the {'legacy' if legacy else 'shipped'} CRD",
    )
    plane.kubectl("delete", resource(V1_API_VERSION), probe)


@pytest.fixture
async def legacy_crd(plane: ControlPlane) -> AsyncIterator[ControlPlane]:
    """The v1 CRD swapped for Calico's pre-2026 shape for one test, then the shipped one again."""
    await set_v1_crd(plane, legacy_v1_crd(), legacy=True)
    try:
        yield plane
    finally:
        clean_kubernetes(plane)
        await set_v1_crd(plane, build_crd(CRD_V1_GROUP), legacy=False)


# --- the scripted server (faults a real apiserver cannot make on demand) ---------------------------


@pytest.fixture
def apiserver() -> Iterator[ReplayApiServer]:
    server = RunningServer()
    try:
        yield server.state
    finally:
        server.stop()
    assert not server.state.unexpected, f"requests without a scripted reply: {server.state.unexpected}"


@pytest.fixture
async def open_replay_store(
    apiserver: ReplayApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DatastoreFactory]:
    monkeypatch.delenv("CALICO_API_GROUP", raising=False)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", apiserver.url, {"token": TOKEN})
    opened: list[KubernetesDatastore] = []

    async def factory(api_version: str = V1_API_VERSION) -> KubernetesDatastore:
        config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig)
        store = KubernetesDatastore(config, api_version=api_version)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()
