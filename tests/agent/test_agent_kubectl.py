"""The agent seen through a real client no one here wrote: kubectl (built with the apiserver) on
the session's real kube-apiserver, the agent as the DaemonSet's ServiceAccount on the lab's real
BIRD, in both CRD modes.

- `kubectl apply -f` of the seed's spec; the agent fills it, and `kubectl get -o yaml` shows the
  seed's read-back shape;
- `kubectl get` shows the CRD's printer columns;
- a `kubectl patch --type merge` of the spec reaches the agent at once (the period is an hour, so
  only the watch event can explain the new status);
- a bad manifest sent with kubectl is refused by the CRD's schema with the field named.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.kubernetes import PLURAL, KubernetesDatastore
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.agent.conftest import wait_for
from tests.plugins.agent import agent_running
from tests.plugins.kubernetes import AGENT_NAMESPACE, KUBE_API_VERSIONS, clean_kubernetes

pytestmark = [pytest.mark.lab, pytest.mark.kubernetes, pytest.mark.slow]

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / "seed"
NAME = "my-caliconodestatus-1"
both_modes = pytest.mark.parametrize("mode", KUBE_API_VERSIONS)


def resource(mode: str) -> str:
    return f"{PLURAL}.{mode.split('/', maxsplit=1)[0]}"


def seed_spec(mode: str, node: str) -> str:
    """The seed's spec YAML for the lab's node, in the mode's group (in v1 mode the group the
    seed's own last-applied-configuration shows the user applied)."""
    document = yaml.safe_load((SEED / "spec.yaml").read_text())
    document["apiVersion"] = mode
    document["spec"]["node"] = node
    return yaml.safe_dump(document)


def shape(value: Any) -> Any:
    """The key structure of a document: dicts by their keys, lists by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def covers(ours: Any, seed: Any, path: str = "") -> list[str]:
    """Paths the seed's shape has and ours lacks (or has with another type)."""
    if isinstance(seed, dict):
        if not isinstance(ours, dict):
            return [path]
        return [m for key in seed for m in covers(ours.get(key), seed[key], f"{path}.{key}")]
    if isinstance(seed, list):
        if not isinstance(ours, list) or (seed and not ours):
            return [path]
        return covers(ours[0], seed[0], f"{path}[0]") if seed else []
    return [] if shape(ours) == seed else [f"{path} ({shape(ours)} vs {seed})"]


@asynccontextmanager
async def agent_as_service_account(node: Any, kubeconfig: Path, mode: str) -> AsyncIterator[NodeStatusAgent]:
    config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig, kube_api_group=mode)
    settings = AgentSettings(node=node.name, holder=f"kubectl-test/{node.name}", heartbeat_seconds=0.5)
    async with KubernetesDatastore(config, namespace=AGENT_NAMESPACE) as datastore:
        sockets = (str(node.socket_v4), str(node.socket_v6) if node.socket_v6 else None)
        async with agent_running(datastore, settings, bird_collector(*sockets)) as agent:
            yield agent


@pytest.fixture
def plane(control_plane: ControlPlane) -> Any:
    yield control_plane
    clean_kubernetes(control_plane)


def get_yaml(plane: ControlPlane, mode: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(plane.kubectl("get", resource(mode), "-o", "yaml").stdout)
    return document


async def filled(plane: ControlPlane, mode: str) -> dict[str, Any] | None:
    (item,) = get_yaml(plane, mode)["items"]
    status = item.get("status") or {}
    return item if status.get("lastUpdated") and status.get("routes", {}).get("routesV4") else None


@both_modes
async def test_kubectl_apply_of_the_seed_is_filled_in_the_seeds_read_back_shape(
    agent_lab: Any, plane: ControlPlane, agent_kubeconfig: Path, mode: str
) -> None:
    node = agent_lab.nodes[0]
    applied = plane.kubectl("apply", "-f", "-", stdin=seed_spec(mode, node.name))
    assert applied.stdout.strip() == f"caliconodestatus.{mode.split('/', maxsplit=1)[0]}/{NAME} created"
    async with agent_as_service_account(node, agent_kubeconfig, mode):
        item = await wait_for(lambda: filled(plane, mode), 20, "the status filled, seen by kubectl")
    (seed,) = yaml.safe_load((SEED / "read-back.yaml").read_text())
    # The read-back's v3 metadata is the aggregated API's view of the v1 CR; kubectl on the CRD
    # shows the CR's own metadata, so only the keys both views have are compared there.
    assert covers(item["spec"], shape(seed["spec"])) == []
    assert covers(item["status"], shape(seed["status"])) == []
    for key in ("creationTimestamp", "generation", "name", "resourceVersion", "uid"):
        assert key in item["metadata"], key
    assert "kubectl.kubernetes.io/last-applied-configuration" in item["metadata"]["annotations"]
    assert item["apiVersion"] == mode
    status = item["status"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["lastUpdated"])
    for daemon in ("birdV4", "birdV6"):
        assert status["agent"][daemon]["state"] == "Ready"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", status["agent"][daemon]["lastBootTime"])
        assert status["agent"][daemon]["routerID"] == str(node.ipv4)
    peers = {p["peerIP"]: p for p in status["bgp"]["peersV4"]}
    assert set(peers) == {str(n.ipv4) for n in agent_lab.nodes if n.name != node.name}
    assert {(p["type"], p["state"]) for p in peers.values()} == {("NodeMesh", "Established")}
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", p["since"]) for p in peers.values())
    assert status["bgp"]["numberEstablishedV4"] == 2
    assert {r["type"] for r in status["routes"]["routesV4"]} <= {"FIB", "RIB"}


@both_modes
async def test_kubectl_get_shows_the_printer_columns(
    agent_lab: Any, plane: ControlPlane, agent_kubeconfig: Path, mode: str
) -> None:
    node = agent_lab.nodes[0]
    plane.kubectl("apply", "-f", "-", stdin=seed_spec(mode, node.name))
    async with agent_as_service_account(node, agent_kubeconfig, mode):
        await wait_for(lambda: filled(plane, mode), 20, "the status filled")
    header, row = plane.kubectl("get", resource(mode)).stdout.splitlines()
    assert header.split() == ["NAME", "NODE", "CLASSES", "PERIOD", "LAST-UPDATED"]
    name, node_name, classes, period, last_updated = row.split()
    assert (name, node_name, json.loads(classes), period) == (
        NAME,
        node.name,
        ["Agent", "BGP", "Routes"],
        "10",
    )
    assert re.fullmatch(r"(\d+m)?\d+s", last_updated)  # a date column: printed as an age


@both_modes
async def test_kubectl_patch_of_the_spec_reaches_the_agent_at_once(
    agent_lab: Any, plane: ControlPlane, agent_kubeconfig: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = agent_lab.nodes[0]
    hourly = seed_spec(mode, node.name).replace("updatePeriodSeconds: 10", "updatePeriodSeconds: 3600")
    plane.kubectl("apply", "-f", "-", stdin=hourly)
    async with agent_as_service_account(node, agent_kubeconfig, mode):
        await wait_for(lambda: filled(plane, mode), 20, "the first report")
        patched_at = time.monotonic()
        plane.kubectl(
            "patch", resource(mode), NAME, "--type", "merge", "-p", '{"spec": {"classes": ["BGP"]}}'
        )

        async def bgp_only() -> dict[str, Any] | None:
            (item,) = get_yaml(plane, mode)["items"]
            status = item["status"]
            routes, agent = status.get("routes") or {}, status.get("agent") or {}
            done = not routes.get("routesV4") and not (agent.get("birdV4") or {}).get("state")
            return item if done and status["bgp"]["numberEstablishedV4"] == 2 else None

        # The next periodic report is an hour away: only the watch event explains a new status.
        await wait_for(bgp_only, 20, "the patched spec's status")
        elapsed = time.monotonic() - patched_at
    with capsys.disabled():
        print(f"\n[{mode}] kubectl patch -> status for the new spec seen by kubectl: {elapsed:.2f} s")


BAD_MANIFESTS = [
    pytest.param(
        "updatePeriodSeconds: 90000",
        r"spec\.updatePeriodSeconds: Invalid value: 90000: "
        r"spec\.updatePeriodSeconds in body should be less than or equal to 86400",
        id="period-too-long",
    ),
    pytest.param(
        "updatePeriodSeconds: -1",
        r"spec\.updatePeriodSeconds: Invalid value: -1: "
        r"spec\.updatePeriodSeconds in body should be greater than or equal to 0",
        id="negative-period",
    ),
    pytest.param(
        "classes: [Agent, Flaps]",
        r'spec\.classes\[1\]: Unsupported value: "Flaps": supported values: "Agent", "BGP", "Routes"',
        id="unknown-class",
    ),
    pytest.param(
        "classes: [Agent, Agent]",
        r'spec\.classes\[1\]: Duplicate value: "Agent"',
        id="duplicate-class",
    ),
    pytest.param(
        "node: Node_A",
        r"spec\.node: Invalid value: \"Node_A\": spec\.node in body should match",
        id="bad-node",
    ),
    pytest.param("node: null", r"spec\.node: Required value", id="missing-node"),
]


@both_modes
@pytest.mark.parametrize(("change", "refusal"), BAD_MANIFESTS)
def test_a_bad_manifest_through_kubectl_is_refused_naming_the_field(
    plane: ControlPlane, mode: str, change: str, refusal: str
) -> None:
    document = yaml.safe_load(seed_spec(mode, "node-a"))
    key, value = change.split(": ", 1)
    if value == "null":
        del document["spec"][key]
    else:
        document["spec"][key] = yaml.safe_load(value)
    result = plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document), check=False)
    assert result.returncode != 0
    assert re.search(refusal, result.stderr), result.stderr
    assert "is invalid" in result.stderr and NAME in result.stderr
    assert plane.kubectl("get", resource(mode), "-o", "name").stdout == ""
