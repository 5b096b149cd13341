"""deploy/: every manifest valid against Kubernetes' OpenAPI schemas (offline), least-privilege RBAC,
and a DaemonSet whose commands and probes use flags our console script really has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from calico_nodestatus.lab.controlplane import ControlPlane
from calico_nodestatus.metrics.catalogue import DEFAULT_METRICS_PORT

DEPLOY = Path(__file__).parents[2] / "deploy"
# 1.31 is the first release with CRD selectableFields (used for the spec.node filter).
KUBERNETES_VERSIONS = ("1.31", kubernetes_validate.latest_version())
CLI = Path(sys.executable).parent / "calico-nodestatus"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def manifest_files() -> list[str]:
    return sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def agent_container(name: str) -> dict[str, Any]:
    (container,) = only(documents(name), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


@pytest.mark.parametrize("name", manifest_files())
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_matches_the_kubernetes_schema(name: str, version: str) -> None:
    for doc in documents(name):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_rejects_an_unknown_field() -> None:
    daemonset = only(documents("daemonset.yaml"), "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_lists_existing_manifests() -> None:
    (kustomization,) = documents("kustomization.yaml")
    assert kustomization["resources"] == [
        "namespace.yaml",
        "crd.yaml",
        "rbac.yaml",
        "agent-admission-policy.yaml",
        "daemonset.yaml",
    ]
    assert all((DEPLOY / resource).is_file() for resource in kustomization["resources"])


def rule_set(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_grants_nothing_broad() -> None:
    """The exact rule set is derived from the agent's real requests on a real apiserver
    (tests/agent/test_agent_rbac.py); here: no wildcard, nothing sensitive, the Role namespaced."""
    docs = documents("rbac.yaml")
    role = only(docs, "Role")
    assert role["metadata"]["namespace"] == "calico-system"
    text = (DEPLOY / "rbac.yaml").read_text()
    assert "*" not in "".join(line.split("#")[0] for line in text.splitlines())
    granted = {resource for _, resource, _ in rule_set(only(docs, "ClusterRole")) | rule_set(role)}
    assert not granted & {"secrets", "configmaps", "nodes", "pods"}
    assert {resource for _, resource, _ in rule_set(role)} == {"leases"}


def test_rbac_binds_the_daemonsets_service_account() -> None:
    docs = documents("rbac.yaml")
    account = only(docs, "ServiceAccount")["metadata"]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        bound = only(docs, binding)
        assert bound["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role,
            "name": only(docs, role)["metadata"]["name"],
        }
        assert bound["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    for name in ("daemonset.yaml", "daemonset-etcd.yaml"):
        daemonset = only(documents(name), "DaemonSet")
        assert daemonset["metadata"]["namespace"] == account["namespace"]
        assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]


@pytest.mark.parametrize("name", ["daemonset.yaml", "daemonset-etcd.yaml"])
def test_daemonset_runs_on_the_node(name: str) -> None:
    pod = only(documents(name), "DaemonSet")["spec"]["template"]["spec"]
    container = agent_container(name)
    assert pod["hostNetwork"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (calico_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/calico"]
    assert calico_mount["readOnly"] is True
    assert volumes[calico_mount["name"]]["hostPath"]["path"] == "/var/run/calico"
    env = env_of(container)
    assert env["NODENAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert set(container["resources"]) == {"requests", "limits"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def flag_values(argv: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


@pytest.mark.parametrize("name", ["daemonset.yaml", "daemonset-etcd.yaml"])
def test_metrics_port_is_the_exporters_default(name: str) -> None:
    container = agent_container(name)
    (port,) = container["ports"]
    assert port["containerPort"] == DEFAULT_METRICS_PORT
    assert flag_values(container["command"])["metrics-port"] == str(DEFAULT_METRICS_PORT)


@pytest.mark.parametrize(
    ("probe", "check"), [("readinessProbe", "--status-ready"), ("livenessProbe", "--status-live")]
)
def test_probes_read_the_file_the_agent_writes(probe: str, check: str) -> None:
    container = agent_container("daemonset.yaml")
    command = container[probe]["exec"]["command"]
    assert command[:2] == [CLI.name, "health"]
    assert check in command
    status_file = flag_values(command)["status-file"]
    assert status_file == flag_values(container["command"])["status-file"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert str(Path(status_file).parent) in writable


def commands() -> list[list[str]]:
    container = agent_container("daemonset.yaml")
    return [
        container["command"],
        *(container[probe]["exec"]["command"] for probe in ("readinessProbe", "livenessProbe")),
    ]


@pytest.mark.parametrize("argv", commands(), ids=lambda argv: " ".join(argv[1:2] + argv[-1:]))
def test_commands_use_real_cli_flags(argv: list[str]) -> None:
    program, subcommand, *args = argv
    assert program == CLI.name
    result = subprocess.run(
        [str(CLI), subcommand, "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    offered = set(re.findall(r"(--[a-z0-9][-a-z0-9]*)", result.stdout))
    used = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    assert used <= offered, f"`{subcommand}` has no {sorted(used - offered)}"
    # Values parse too: a probe with a bad argument fails with a usage error (exit 2), not a check.
    if subcommand == "health":
        probe = subprocess.run([str(CLI), *argv[1:]], check=False, capture_output=True, text=True, timeout=60)
        assert probe.returncode == 1, probe.stderr
        assert "status file" in probe.stderr + probe.stdout


def test_etcd_variant_differs_only_in_the_datastore() -> None:
    base = only(documents("daemonset.yaml"), "DaemonSet")
    etcd = only(documents("daemonset-etcd.yaml"), "DaemonSet")
    etcd_container = etcd["spec"]["template"]["spec"]["containers"][0]
    env = env_of(etcd_container)
    assert env["DATASTORE_TYPE"] == "etcdv3"
    (certs,) = [v for v in etcd["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert certs["secret"]["defaultMode"] == 0o400
    (mount,) = [m for m in etcd_container["volumeMounts"] if m["name"] == certs["name"]]
    assert mount["readOnly"] is True
    for variable in ("ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"):
        assert Path(env[variable]).parent == Path(mount["mountPath"])
    assert env["ETCD_ENDPOINTS"].startswith("https://")
    # Everything but name, labels, datastore env and the certificate volume is the base DaemonSet.
    etcd_container["env"] = [e for e in etcd_container["env"] if not e["name"].startswith("ETCD_")]
    etcd_container["env"][0]["value"] = "kubernetes"
    etcd_container["volumeMounts"].remove(mount)
    etcd["spec"]["template"]["spec"]["volumes"].remove(certs)
    rendered = yaml.safe_dump(etcd).replace("calico-nodestatus-etcd", "calico-nodestatus")
    assert yaml.safe_load(rendered) == base


@pytest.mark.kubernetes
@pytest.mark.parametrize("name", manifest_files())
def test_the_real_apiserver_accepts_the_manifest(name: str, control_plane: ControlPlane) -> None:
    """Beyond the offline schemas: the apiserver's own validation (and CEL compilation of the
    admission policy) with a server-side dry run."""
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", str(DEPLOY / name), check=False)
    assert result.returncode == 0, result.stderr
