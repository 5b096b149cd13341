"""create/apply/replace/get/delete against a real embedded datastore file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from calico_nodestatus.api.crd_v1 import METADATA_ANNOTATION
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION
from tests.cli.conftest import MANIFESTS, CliTarget, console_base_env, manifest, run_console

SEED_SPEC = MANIFESTS / "seed" / "spec.yaml"
SEED_READ_BACK = MANIFESTS / "seed" / "read-back.yaml"


def test_create_then_get_in_every_output_format(target: CliTarget) -> None:
    created = target.ok("create", "-f", str(SEED_SPEC))
    assert created.stdout == "Successfully created 1 'CalicoNodeStatus' resource(s)\n"
    assert target.ok("get", "caliconodestatus").stdout == (
        "NAME                    NODE             \nmy-caliconodestatus-1   my-kadm-node-0   \n\n"
    )
    (stored,) = yaml.safe_load(target.ok("get", "cns", "-o", "yaml").stdout)
    assert stored["spec"] == yaml.safe_load(SEED_SPEC.read_text())["spec"]
    assert stored["metadata"]["generation"] == 1
    assert stored["metadata"]["uid"]
    assert stored["status"]["bgp"]["numberEstablishedV4"] == 0
    single = yaml.safe_load(target.ok("get", "NodeStatus", "my-caliconodestatus-1", "-o", "yaml").stdout)
    assert single == stored
    assert (
        json.loads(target.ok("get", "nodestatuses", "my-caliconodestatus-1", "-o", "json").stdout) == stored
    )
    assert (
        target.ok("get", "CalicoNodeStatuses", "-o", "name").stdout
        == "caliconodestatus/my-caliconodestatus-1\n"
    )
    wide = target.ok("get", "cns", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "NODE",
        "CLASSES",
        "PERIOD",
        "LAST-UPDATED",
        "AGENT",
        "ESTABLISHED-V4",
        "ESTABLISHED-V6",
        "STALE",
        "EXPIRES",
    ]
    assert wide[1].split() == [
        "my-caliconodestatus-1",
        "my-kadm-node-0",
        "Agent,BGP,Routes",
        "10s",
        "-",
        "none",
        "-",
        "-",
        "-",
        "-",
    ]


def test_saved_get_output_is_reapplied_with_status_ignored(target: CliTarget, tmp_path: Path) -> None:
    target.ok("create", "-f", str(SEED_SPEC))
    saved = tmp_path / "saved.yaml"
    saved.write_text(
        target.ok("get", "cns", "-o", "yaml").stdout.replace(
            "updatePeriodSeconds: 10", "updatePeriodSeconds: 0"
        )
    )
    result = target.ok("apply", "-f", str(saved))
    assert result.stderr == ""  # an empty status is not worth a warning
    (after,) = target.stored()
    assert after["spec"]["updatePeriodSeconds"] == 0
    assert after["metadata"]["generation"] == 2


def test_status_in_input_is_ignored_with_a_warning(target: CliTarget) -> None:
    text = SEED_READ_BACK.read_text()
    result = target.ok("create", "-f", str(SEED_READ_BACK))
    assert result.stderr == (
        "Warning: document 1, item 1 (my-caliconodestatus-1): status is ignored; only the agent writes it\n"
    )
    (stored,) = target.stored()
    (seed,) = yaml.safe_load(text)
    # Server-managed metadata from the file is ignored on create; the store sets its own.
    assert stored["metadata"]["uid"] != seed["metadata"]["uid"]
    assert stored["metadata"]["generation"] == 1
    assert stored["metadata"]["resourceVersion"] != seed["metadata"]["resourceVersion"]
    annotations = dict(seed["metadata"]["annotations"])
    if target.config.kube_api_group == V1_API_VERSION:
        # libcalico-go's own storage annotation in the v1 CRD: the store writes its own there.
        annotations.pop(METADATA_ANNOTATION)
    assert stored["metadata"]["annotations"] == annotations
    assert stored["status"]["lastUpdated"] is None
    assert "peersV4" not in stored["status"]["bgp"]


def test_apply_of_the_seed_read_back_creates_it_where_absent(target: CliTarget) -> None:
    """The read-back carries resourceVersion, uid, generation and a status: applied where the
    object does not exist, it is created (server-managed metadata ignored); once it exists, its
    resourceVersion is a precondition again."""
    (seed,) = yaml.safe_load(SEED_READ_BACK.read_text())
    result = target.ok("apply", "-f", str(SEED_READ_BACK))
    assert result.stdout == "Successfully applied 1 'CalicoNodeStatus' resource(s)\n"
    (stored,) = target.stored()
    assert stored["spec"] == seed["spec"]
    assert stored["metadata"]["uid"] != seed["metadata"]["uid"]
    assert stored["metadata"]["resourceVersion"] != seed["metadata"]["resourceVersion"]
    assert stored["status"]["lastUpdated"] is None
    again = target.run("apply", "-f", str(SEED_READ_BACK))
    assert again.exit_code == 1
    assert again.stderr.endswith(
        "Error: document 1, item 1 (my-caliconodestatus-1): "
        "update conflict: CalicoNodeStatus(my-caliconodestatus-1)\n"
    )
    assert target.stored() == [stored]


def test_apply_creates_then_updates_and_resource_version_is_a_precondition(target: CliTarget) -> None:
    assert target.ok("apply", "-f", "-", stdin=manifest("a")).stdout.startswith("Successfully applied 1")
    (first,) = target.stored()
    revision = first["metadata"]["resourceVersion"]
    with_revision = manifest("a", period=20).replace(
        "  name: a\n", f"  name: a\n  resourceVersion: '{revision}'\n"
    )
    target.ok("apply", "-f", "-", stdin=with_revision)
    (second,) = target.stored()
    assert second["spec"]["updatePeriodSeconds"] == 20
    stale = with_revision.replace("updatePeriodSeconds: 20", "updatePeriodSeconds: 30")
    for verb in ("apply", "replace"):
        result = target.run(verb, "-f", "-", stdin=stale)
        assert result.exit_code == 1
        assert result.stderr == "Error: document 1 (a): update conflict: CalicoNodeStatus(a)\n"
    assert target.stored() == [second]


def test_replace_needs_an_existing_object(target: CliTarget) -> None:
    result = target.run("replace", "-f", "-", stdin=manifest("absent"))
    assert result.exit_code == 1
    assert "resource does not exist: CalicoNodeStatus(absent)" in result.stderr
    target.ok("create", "-f", "-", stdin=manifest("absent"))
    target.ok("replace", "-f", "-", stdin=manifest("absent", classes="[Routes]"))
    assert target.stored()[0]["spec"]["classes"] == ["Routes"]


def test_multi_document_create_is_all_or_nothing(target: CliTarget) -> None:
    target.ok("create", "-f", "-", stdin=manifest("b"))
    before = target.stored()
    result = target.run(
        "create", "-f", "-", stdin=manifest("a") + "---\n" + manifest("b") + "---\n" + manifest("c")
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: document 2 (b): resource already exists: CalicoNodeStatus(b) with error: already exists\n"
    )
    assert target.stored() == before
    target.ok("create", "-f", "-", stdin=manifest("a") + "---\n" + manifest("c"))
    assert [obj["metadata"]["name"] for obj in target.stored()] == ["a", "b", "c"]


def test_get_filters_and_missing_names(target: CliTarget) -> None:
    target.ok("create", "-f", "-", stdin=manifest("a", node="n1") + "---\n" + manifest("b", node="n2"))
    assert target.ok("get", "cns", "--node", "n2", "-o", "name").stdout == "caliconodestatus/b\n"
    missing = target.run("get", "cns", "nope")
    assert missing.exit_code == 1
    # <inner> is the backend's own error, as in calicoctl (the API server's text on Kubernetes).
    assert missing.stderr.startswith("Error: resource does not exist: CalicoNodeStatus(nope) with error: ")
    assert missing.stderr.endswith("not found\n")
    unknown = target.run("get", "bgppeers")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith(
        "Error: unknown resource type 'bgppeers' (expected one of: caliconodestatus"
    )


def test_delete_by_name_and_by_file_all_or_nothing(target: CliTarget, tmp_path: Path) -> None:
    both = manifest("a") + "---\n" + manifest("b")
    target.ok("create", "-f", "-", stdin=both + "---\n" + manifest("c"))
    assert (
        target.ok("delete", "caliconodestatus", "c").stdout
        == "Successfully deleted 1 'CalicoNodeStatus' resource(s)\n"
    )
    partly_missing = target.run("delete", "cns", "a", "c")
    assert partly_missing.exit_code == 1
    assert "resource does not exist: CalicoNodeStatus(c)" in partly_missing.stderr
    assert [obj["metadata"]["name"] for obj in target.stored()] == ["a", "b"]
    file = tmp_path / "both.yaml"
    file.write_text(both)
    target.ok("delete", "-f", str(file))
    assert target.stored() == []
    again = target.run("delete", "-f", str(file))
    assert again.exit_code == 1
    assert (
        again.stderr
        == "Error: document 1 (a): resource does not exist: CalicoNodeStatus(a) with error: not found\n"
    )


def test_unreadable_file_is_one_line(target: CliTarget, tmp_path: Path) -> None:
    result = target.run("create", "-f", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot read {tmp_path / 'missing.yaml'}: No such file or directory\n"


@pytest.fixture
def console_env(tmp_path: Path) -> dict[str, str]:
    env = console_base_env()
    env["CALICO_NODESTATUS_DB"] = str(tmp_path / "console.db")
    return env


def test_console_script_end_to_end(console_env: dict[str, str]) -> None:
    created = run_console(console_env, "create", "-f", "-", stdin=SEED_SPEC.read_text())
    assert (created.returncode, created.stdout) == (
        0,
        "Successfully created 1 'CalicoNodeStatus' resource(s)\n",
    )
    listed = run_console(console_env, "get", "caliconodestatus", "-o", "yaml")
    (stored,) = yaml.safe_load(listed.stdout)
    assert stored["metadata"]["name"] == "my-caliconodestatus-1"
    assert listed.stdout.startswith("- apiVersion: projectcalico.org/v3\n  kind: CalicoNodeStatus\n")
    bad = run_console(console_env, "apply", "-f", str(MANIFESTS / "bad" / "period-too-large.yaml"))
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: document 1: error with field Spec.UpdatePeriodSeconds = '99999'")
    assert len(bad.stderr.splitlines()) == 1
    deleted = run_console(console_env, "delete", "cns", "my-caliconodestatus-1")
    assert deleted.returncode == 0
    assert run_console(console_env, "get", "cns", "-o", "name").stdout == ""


def test_python_dash_m_runs_the_same_cli(console_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "calico_nodestatus", "get", "cns"],
        env=console_env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "NAME   NODE   \n\n")
