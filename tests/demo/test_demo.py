"""`make demo` end to end: the real demo script on a fresh lab, on the embedded datastore, on the
private etcd it starts (`--datastore etcdv3`) and on its private kube-apiserver (`--datastore
kubernetes`, agents as the ServiceAccount, the status printed by kubectl); then `--down` must leave
nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.datastore.etcd import RESOURCE_PREFIX
from calico_nodestatus.lab import Lab
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.plugins.etcd import ETCDCTL_BIN

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
DATASTORE_ENV = (
    "DATASTORE_TYPE",
    "ETCD_ENDPOINTS",
    "ETCD_CA_CERT_FILE",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "KUBECONFIG",
    "CALICO_API_GROUP",
    "POD_NAMESPACE",
)
YAML_STEP = "-o yaml"


def run_demo(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(DEMO), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"demo {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def printed_object(stdout: str) -> dict[str, Any]:
    """The `get -o yaml` document the demo prints between its last step line and the hints."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("==> filled") and YAML_STEP in line)
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith(("==> ", "Explore")))
    document: dict[str, Any] = yaml.safe_load("\n".join(lines[start + 1 : end]))
    return document


def printed_mesh(stdout: str) -> list[str]:
    """The mesh matrix and verdict the demo ends with, before the hints."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("==> calico-nodestatus mesh"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Explore"))
    return lines[start + 1 : end]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pids_in(directory: Path, pattern: str) -> list[int]:
    """Pids from the pid files under the lab directory (agents/, etcd/, and BIRD's per node)."""
    return [int(path.read_text()) for path in sorted(directory.glob(pattern))]


def etcd_value(endpoint: str, name: str) -> dict[str, Any]:
    reply = subprocess.run(
        [ETCDCTL_BIN, f"--endpoints={endpoint}", "get", f"{RESOURCE_PREFIX}{name}", "--print-value-only"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    stored: dict[str, Any] = json.loads(reply.stdout)
    return stored


@pytest.mark.parametrize(
    "datastore",
    [
        "embedded",
        pytest.param("etcdv3", marks=pytest.mark.etcd),
        pytest.param("kubernetes", marks=pytest.mark.kubernetes),
    ],
)
def test_demo_fills_the_status_and_down_removes_everything(
    datastore: str, lab_name_factory: Callable[[], str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo builds network namespaces and needs root")
    name = lab_name_factory()  # unique, and destroyed after the test whatever happens
    db = tmp_path / "datastore.db"
    # The caller's datastore selection must not leak in; the embedded file is private to the test.
    env = {key: value for key, value in os.environ.items() if key not in DATASTORE_ENV}
    env["CALICO_NODESTATUS_DB"] = str(db)

    stdout = run_demo(env, "--name", name, "--datastore", datastore)

    lab = Lab.open(name)
    first, *others = lab.nodes
    shown = printed_object(stdout)
    assert shown["metadata"]["name"] == f"{first.name}-status"
    assert shown["spec"] == {
        "classes": ["Agent", "BGP", "Routes"],
        "node": first.name,
        "updatePeriodSeconds": 10,
    }
    status = shown["status"]
    assert status["lastUpdated"]
    # It ends with the mesh of every node, both ends of every session up.
    mesh = printed_mesh(stdout)
    names = [node.name for node in lab.nodes]
    for family in ("IPv4", "IPv6"):
        (header,) = [line for line in mesh if line.startswith(family)]
        assert header.split() == [family, *names]
    rows = [line.split() for line in mesh if line.split()[:1] == [first.name] and "up|up" in line]
    assert rows == [[first.name, "·", "up|up", "up|up"]] * 2
    assert f"all {len(names)} nodes healthy" in "\n".join(mesh)
    for family in ("birdV4", "birdV6"):
        assert status["agent"][family]["state"] == "Ready"
        assert status["agent"][family]["routerID"] == str(first.ipv4)
    peers = {
        "V4": sorted(str(node.ipv4) for node in others),
        "V6": sorted(str(node.ipv6) for node in others),
    }
    for family, expected in peers.items():
        listed = status["bgp"][f"peers{family}"]
        assert sorted(peer["peerIP"] for peer in listed) == expected
        assert {peer["state"] for peer in listed} == {"Established"}
        assert status["bgp"][f"numberEstablished{family}"] == len(expected)
        assert status["bgp"][f"numberNotEstablished{family}"] == 0
        # Every peer's block arrives as a FIB route learned over the mesh.
        learned = {
            route["learnedFrom"].get("peerIP")
            for route in status["routes"][f"routes{family}"]
            if route["type"] == "FIB" and route["learnedFrom"]["sourceType"] == "NodeMesh"
        }
        assert sorted(learned) == expected

    recorded = json.loads((lab.directory / "demo.json").read_text())["datastore"]
    assert recorded["DATASTORE_TYPE"] == datastore
    if datastore == "etcdv3":
        # The object lives in the demo's etcd under Calico's key, not in the embedded file.
        assert f"ETCD_ENDPOINTS={recorded['ETCD_ENDPOINTS']}" in stdout
        assert etcd_value(recorded["ETCD_ENDPOINTS"], shown["metadata"]["name"])["status"]["lastUpdated"]
        assert not db.exists()
    servers: list[int] = []
    if datastore == "kubernetes":
        # kubectl printed it from the demo's apiserver: the v1 CRD, the agents' status inside.
        assert shown["apiVersion"] == "crd.projectcalico.org/v1"
        assert f"KUBECONFIG={recorded['KUBECONFIG']}" in stdout
        plane = ControlPlane.open(lab.directory / "kubernetes")
        assert plane.running()
        servers = [plane.apiserver_pid, plane.etcd_pid]
        assert not db.exists()
    assert len(pids_in(lab.directory, "agents/*.pid")) == len(lab.nodes)
    assert len(pids_in(lab.directory, "etcd/*.pid")) == (datastore == "etcdv3")
    pids = pids_in(lab.directory, "**/*.pid") + servers
    assert pids and all(alive(pid) for pid in pids)

    run_demo(env, "--down", "--name", name)

    left = Lab.leftovers(name)
    assert left.empty, left
    assert not [pid for pid in pids if alive(pid)]
    if datastore == "embedded":
        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "calico_nodestatus",
                "--db",
                str(db),
                "get",
                "caliconodestatus",
                "-o",
                "name",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert listed.stdout == ""
