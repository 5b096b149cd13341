"""pytest fixtures for a real Kubernetes control plane (etcd + kube-apiserver built from the Go
module in tools/k8s; see calico_nodestatus.lab.controlplane), in the way controller-runtime's
envtest runs one.

- ``control_plane`` (session): the running control plane with deploy/namespace.yaml, both CRDs
  (``crd.projectcalico.org/v1`` from deploy/crd.yaml and the native ``projectcalico.org/v3`` one)
  and deploy/rbac.yaml with the agent's admission policy applied exactly as shipped. Stopped at
  the end of the run, also on failure.
- ``agent_kubeconfig`` (session): a kubeconfig authenticating as the DaemonSet's ServiceAccount
  (``calico-system/calico-nodestatus``) with a token from the TokenRequest API.
- ``kube_api_groups``: the two modes, ``crd.projectcalico.org/v1`` and ``projectcalico.org/v3``.
- ``clean_kubernetes(plane)``: removes every CalicoNodeStatus (both groups) and the agents' Leases.

A missing binary is a broken install (`make control-plane`), so it fails the run, never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from calico_nodestatus.api.crd import build_crd
from calico_nodestatus.api.crd_v1 import CRD_V1_GROUP
from calico_nodestatus.api.model import API_GROUP
from calico_nodestatus.datastore.kubernetes import LEASE_MANAGED_BY, V1_API_VERSION, V3_API_VERSION
from calico_nodestatus.lab.controlplane import ControlPlane

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENT_NAMESPACE = "calico-system"
AGENT_SERVICE_ACCOUNT = "calico-nodestatus"
CRD_NAMES = (f"caliconodestatuses.{CRD_V1_GROUP}", f"caliconodestatuses.{API_GROUP}")
KUBE_API_VERSIONS = (V1_API_VERSION, V3_API_VERSION)


def install_calico_nodestatus(plane: ControlPlane) -> None:
    """The shipped namespace, CRDs and RBAC, as an operator would apply them; both CRD modes."""
    plane.install_nodestatus(DEPLOY, native_v3_crd=yaml.safe_dump(build_crd(API_GROUP)))


def clean_kubernetes(plane: ControlPlane) -> None:
    for name in CRD_NAMES:
        plane.kubectl("delete", name, "--all", "--wait=false")
    label, value = LEASE_MANAGED_BY
    plane.kubectl("delete", "leases", "-n", AGENT_NAMESPACE, "-l", f"{label}={value}", "--wait=false")


def wait_serving(plane: ControlPlane, within: float = 60.0) -> None:
    """Until the apiserver serves the resources the tests use: after a (re)start `/readyz` is ok
    while their storage may still answer 429 "storage is (re)initializing"."""
    deadline = time.monotonic() + within
    while plane.kubectl("get", *CRD_NAMES[:1], "-o", "name", check=False).returncode != 0 or any(
        plane.kubectl("get", name, "-A", "-o", "name", check=False).returncode != 0
        for name in (*CRD_NAMES[1:], "leases")
    ):
        if time.monotonic() > deadline:
            pytest.fail(f"the apiserver did not serve CalicoNodeStatuses and Leases within {within}s")
        time.sleep(0.2)


def restart_apiserver(plane: ControlPlane) -> None:
    plane.restart_apiserver()
    wait_serving(plane)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), owned=True)
    try:
        plane.start()
        install_calico_nodestatus(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def agent_kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.service_account_kubeconfig(
        AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, control_plane.workdir / "agent.kubeconfig"
    )
