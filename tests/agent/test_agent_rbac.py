"""The agent's Kubernetes permissions, proven on the real kube-apiserver with RBAC enforced.

- The shipped RBAC is derived from what the agent really sends: the apiserver's audit log records
  every request the agent's ServiceAccount made through a whole life cycle (list, watch, a status
  write, a conflict and its re-read, the routes-omitted and bgp-sessions annotations, the delete of
  an expired object, the Lease from create to release), in both CRD modes; the rules it needed
  must be exactly the rules deploy/rbac.yaml grants, and none of its requests may have been refused.
- deploy/agent-admission-policy.yaml narrows the agent's `patch` to its own annotations, and its
  `delete` to objects carrying the expiry annotation.
- An identity without the `/status` permission gives a clear error in the agent's log, in `health`
  and in `doctor`, and the agent keeps running (no crash loop).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.api.annotations import BGP_SESSIONS_ANNOTATION, EXPIRES_AT_ANNOTATION, format_expiry
from calico_nodestatus.datastore.base import Datastore, NotFound
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.datastore.kubernetes import PLURAL, V1_API_VERSION, V3_API_VERSION, KubernetesDatastore
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.agent.conftest import node_status, wait_for
from tests.plugins.agent import agent_argv, agent_process, agent_running, embedded_env
from tests.plugins.kubernetes import AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, DEPLOY, clean_kubernetes

pytestmark = [pytest.mark.lab, pytest.mark.kubernetes, pytest.mark.slow]

AGENT_USER = f"system:serviceaccount:{AGENT_NAMESPACE}:{AGENT_SERVICE_ACCOUNT}"
SMALL_BUDGET = 4 * 1024  # the lab node's table with a few hundred extra routes does not fit


def granted_rules() -> set[tuple[str, str, str, str]]:
    """(namespace or "", API group, resource[/subresource], verb) for every rule of rbac.yaml."""
    rules = set()
    for doc in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            namespace = doc["metadata"].get("namespace", "")
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        rules |= {(namespace, group, resource, verb) for verb in rule["verbs"]}
    return rules


def requested_rules(events: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """The same tuples for the resource requests in audit events (API discovery and other
    non-resource URLs are open to every authenticated client, so they are not RBAC's business)."""
    requested = set()
    for event in events:
        ref = event.get("objectRef")
        if not ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        requested.add((ref.get("namespace", ""), ref.get("apiGroup", ""), resource, event["verb"]))
    return requested


class SlippedWrite(KubernetesDatastore):
    """The agent's datastore, with one real write by the admin slipped in before its first status
    write: the stored resourceVersion moves on, so that write gets a real 409."""

    def __init__(self, config: DatastoreConfig, admin: Datastore) -> None:
        super().__init__(config)
        self._admin: Datastore | None = admin

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            current = await admin.get(obj.name)
            labels = {**current.metadata.labels, "edited-meanwhile": "yes"}
            await admin.update(
                current.model_copy(
                    update={"metadata": current.metadata.model_copy(update={"labels": labels})}
                )
            )
        return await super().update_status(obj)


@asynccontextmanager
async def agent_as_service_account(
    node: Any, kubeconfig: Path, api_group: str, admin: Datastore
) -> AsyncIterator[NodeStatusAgent]:
    settings = AgentSettings(
        node=node.name, holder=f"rbac-test/{node.name}", size_budget_bytes=SMALL_BUDGET, heartbeat_seconds=0.5
    )
    config = DatastoreConfig(type="kubernetes", kubeconfig=kubeconfig, kube_api_group=api_group)
    async with SlippedWrite(config, admin) as datastore:
        sockets = (str(node.socket_v4), str(node.socket_v6) if node.socket_v6 else None)
        collector = bird_collector(*sockets, size_budget_bytes=SMALL_BUDGET)
        async with agent_running(datastore, settings, collector) as agent:
            yield agent


async def _life_cycle(lab: Any, plane: ControlPlane, kubeconfig: Path, api_group: str) -> None:
    """Everything the agent does on a cluster, once: list and watch, a status write that conflicts
    and is re-read, the routes-omitted and bgp-sessions annotations, a spec change, a delete, the
    delete of an expired object, its Lease throughout."""
    node = lab.nodes[0]
    admin_config = DatastoreConfig(
        type="kubernetes", kubeconfig=plane.admin_kubeconfig, kube_api_group=api_group
    )
    async with (
        open_datastore(admin_config) as admin,
        agent_as_service_account(node, kubeconfig, api_group, admin) as agent,
    ):
        await admin.create(node_status("rbac", node.name, ["Agent", "BGP", "Routes"], 1))

        async def annotated() -> CalicoNodeStatus | None:
            obj = await admin.get("rbac")
            has_status = obj.status.last_updated is not None
            reported = {ROUTES_OMITTED_ANNOTATION, BGP_SESSIONS_ANNOTATION} <= obj.metadata.annotations.keys()
            return obj if has_status and reported else None

        obj = await wait_for(annotated, 20, "status written with the routes-omitted annotation")
        assert obj.metadata.labels == {"edited-meanwhile": "yes"}  # the slipped write survived
        assert agent.snapshot().counters.write_conflicts >= 1
        spec = obj.spec.model_copy(update={"update_period_seconds": 2})
        await admin.update(obj.model_copy(update={"spec": spec}))
        await wait_for(lambda: _tracked_period(agent, "rbac", 2), 10, "the spec change reaching the agent")
        await admin.delete("rbac")
        await wait_for(lambda: _dropped(agent, "rbac"), 10, "the agent dropping the deleted object")
        expiring = node_status("rbac-expiring", node.name, ["BGP"], 1)
        expiry = format_expiry(datetime.now(UTC) + timedelta(seconds=2))
        expiring.metadata.annotations[EXPIRES_AT_ANNOTATION] = expiry
        await admin.create(expiring)
        await wait_for(lambda: _gone(admin, "rbac-expiring"), 20, "the agent deleting the expired object")
    # The agent released its Lease on the way out.
    assert await _lease_holder(plane, node.name) is None


async def _tracked_period(agent: NodeStatusAgent, name: str, period: int) -> bool:
    report = agent.snapshot().object_reports.get(name)
    return report is not None and report.update_period_seconds == period


async def _dropped(agent: NodeStatusAgent, name: str) -> bool:
    return name not in agent.snapshot().objects


async def _gone(store: Datastore, name: str) -> bool:
    try:
        await store.get(name)
    except NotFound:
        return True
    return False


async def _lease_holder(plane: ControlPlane, node: str) -> str | None:
    lease = json.loads(
        plane.kubectl("get", "lease", f"calico-nodestatus-{node}", "-n", AGENT_NAMESPACE, "-o", "json").stdout
    )
    holder: str | None = lease["spec"].get("holderIdentity")
    return holder


async def test_shipped_rbac_is_exactly_what_the_agent_sends(
    agent_lab: Any, control_plane: ControlPlane, agent_kubeconfig: Path
) -> None:
    agent_lab.set_routes(agent_lab.nodes[1].index, 300)
    before = len(control_plane.audit_events(AGENT_USER))
    try:
        for api_group in (V1_API_VERSION, V3_API_VERSION):
            await _life_cycle(agent_lab, control_plane, agent_kubeconfig, api_group)
    finally:
        agent_lab.set_routes(agent_lab.nodes[1].index, 0)
        clean_kubernetes(control_plane)
    events = control_plane.audit_events(AGENT_USER)[before:]
    refused = [e for e in events if (e.get("responseStatus") or {}).get("code") == 403]
    assert not refused, f"requests the shipped RBAC refused: {requested_rules(refused)}"
    requested, granted = requested_rules(events), granted_rules()
    assert requested - granted == set()
    assert granted - requested == set(), "granted but never needed: drop it from deploy/rbac.yaml"


# --- the admission policy --------------------------------------------------------------------------


async def test_the_agent_may_patch_only_its_own_annotations(
    control_plane: ControlPlane, agent_kubeconfig: Path
) -> None:
    resource = f"{PLURAL}.crd.projectcalico.org"
    control_plane.apply(
        "apiVersion: crd.projectcalico.org/v1\nkind: CalicoNodeStatus\n"
        "metadata: {name: narrowed, labels: {team: net}, annotations: {owner: ops}}\n"
        "spec: {node: node-1, classes: [Agent], updatePeriodSeconds: 10}\n"
    )

    def patch_as_agent(change: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return control_plane.kubectl(
            "patch", resource, "narrowed", "--type", "merge", "-p", json.dumps(change),
            kubeconfig=agent_kubeconfig, check=False,
        )  # fmt: skip

    try:
        # The policy takes effect once the apiserver has loaded it: wait for its first refusal.
        async def spec_refused() -> subprocess.CompletedProcess[str] | None:
            result = patch_as_agent({"spec": {"updatePeriodSeconds": 5}})
            return result if result.returncode != 0 else None

        refused = await wait_for(spec_refused, 30, "the admission policy refusing a spec patch")
        assert "may not change the spec" in refused.stderr
        for change, message in (
            ({"metadata": {"labels": {"team": "other"}}}, "may not change the labels"),
            ({"metadata": {"annotations": {"owner": "agent"}}}, "may only change annotations under"),
            ({"metadata": {"finalizers": ["example.com/keep"]}}, "may not change finalizers"),
        ):
            result = patch_as_agent(change)
            assert result.returncode != 0 and message in result.stderr, result.stderr
        assert (
            patch_as_agent(
                {"metadata": {"annotations": {ROUTES_OMITTED_ANNOTATION: '{"v4":1,"v6":0}'}}}
            ).returncode
            == 0
        )
        stored = json.loads(control_plane.kubectl("get", resource, "narrowed", "-o", "json").stdout)
        assert stored["spec"]["updatePeriodSeconds"] in (10, 5)  # 5 only if the policy was not loaded yet
        assert stored["metadata"]["labels"] == {"team": "net"}
        assert stored["metadata"]["annotations"][ROUTES_OMITTED_ANNOTATION] == '{"v4":1,"v6":0}'
        assert stored["metadata"]["annotations"]["owner"] == "ops"

        delete = ("delete", resource, "narrowed", "--wait=false")
        refused_delete = control_plane.kubectl(*delete, kubeconfig=agent_kubeconfig, check=False)
        assert refused_delete.returncode != 0
        assert "may delete only a CalicoNodeStatus with a nodestatus.projectcalico.org/expires-at" in (
            refused_delete.stderr
        )
        expiry = {EXPIRES_AT_ANNOTATION: "2020-01-01T00:00:00Z"}
        control_plane.kubectl(
            "patch",
            resource,
            "narrowed",
            "--type",
            "merge",
            "-p",
            json.dumps({"metadata": {"annotations": expiry}}),
        )
        assert control_plane.kubectl(*delete, kubeconfig=agent_kubeconfig, check=False).returncode == 0
    finally:
        clean_kubernetes(control_plane)


# --- an identity without the /status permission -------------------------------------------------------

NO_STATUS_ACCOUNT = "nodestatus-without-status"


def _account_without_status_permission(plane: ControlPlane) -> Path:
    """A ServiceAccount with the shipped rules except `update` on caliconodestatuses/status."""
    documents = []
    for doc in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()):
        if not doc:
            continue
        doc["metadata"]["name"] = NO_STATUS_ACCOUNT
        if doc["kind"] == "ClusterRole":
            doc["rules"] = [r for r in doc["rules"] if f"{PLURAL}/status" not in r["resources"]]
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            doc["roleRef"]["name"] = NO_STATUS_ACCOUNT
            doc["subjects"][0]["name"] = NO_STATUS_ACCOUNT
        documents.append(doc)
    plane.apply(yaml.safe_dump_all(documents))
    return plane.service_account_kubeconfig(
        AGENT_NAMESPACE, NO_STATUS_ACCOUNT, plane.workdir / f"{NO_STATUS_ACCOUNT}.kubeconfig"
    )


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calico_nodestatus", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_a_missing_status_permission_is_a_clear_error_not_a_crash_loop(
    agent_lab: Any, control_plane: ControlPlane, tmp_path: Path
) -> None:
    node = agent_lab.nodes[2]
    kubeconfig = _account_without_status_permission(control_plane)
    status_file = tmp_path / "status.json"
    env = {
        "DATASTORE_TYPE": "kubernetes", "KUBECONFIG": str(kubeconfig),
        "CALICO_API_GROUP": V1_API_VERSION, "POD_NAMESPACE": AGENT_NAMESPACE,
    }  # fmt: skip
    log = tmp_path / "agent.log"
    argv = agent_argv(
        node.name, node.socket_v4, node.socket_v6,
        "--status-file", str(status_file), "--metrics-port", "0", "--heartbeat-seconds", "0.5",
    )  # fmt: skip
    control_plane.apply(
        "apiVersion: crd.projectcalico.org/v1\nkind: CalicoNodeStatus\nmetadata: {name: denied}\n"
        f"spec: {{node: {node.name}, classes: [Agent], updatePeriodSeconds: 1}}\n"
    )
    try:
        async with agent_process(argv, env, log) as process:
            await _refused_and_reported(node, process, log, status_file, tmp_path, control_plane)
    finally:
        clean_kubernetes(control_plane)


async def _refused_and_reported(
    node: Any, process: Any, log: Path, status_file: Path, tmp_path: Path, control_plane: ControlPlane
) -> None:
    def log_text() -> str:
        return log.read_text(errors="replace")

    async def refused_twice() -> bool:
        return log_text().count("event=write_failed") >= 2

    await wait_for(refused_twice, 30, "two refused status writes in the agent's log", explain=log_text)
    text = log_text()
    assert "permission denied: the kubernetes API answered 403" in text
    assert "caliconodestatuses/status" in text and "deploy/rbac.yaml" in text
    assert process.returncode is None, "the agent exited"

    health = _cli("health", "--status-file", str(status_file), "--status-ready", env={})
    assert health.returncode == 1
    assert "permission denied" in health.stdout + health.stderr

    doctor = _cli(
        "doctor", "--node", node.name, "--bird-socket", str(node.socket_v4),
        "--bird6-socket", str(node.socket_v6), "--status-file", str(status_file),
        "--connect-timeout", "0.2", env=embedded_env(tmp_path / "none.db"),
    )  # fmt: skip
    assert doctor.returncode == 1, doctor.stdout
    summary = f"[FAIL] agent {node.name}: the agent reports datastore not ready: write: permission denied"
    assert summary in doctor.stdout
    assert "remedy: the agent's identity lacks a permission: apply deploy/rbac.yaml" in doctor.stdout
    stored = json.loads(
        control_plane.kubectl("get", f"{PLURAL}.crd.projectcalico.org", "denied", "-o", "json").stdout
    )
    assert "status" not in stored or not stored["status"].get("lastUpdated")
