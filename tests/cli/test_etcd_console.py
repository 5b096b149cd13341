"""The console script on a real etcd: Calico's keys and JSON, objects Calico wrote, unreachable etcd."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.datastore.etcd import DEFAULT_REQUEST_TIMEOUT_S, RESOURCE_PREFIX
from tests.cli.conftest import MANIFESTS, console_base_env, etcd_text, run_console
from tests.plugins.etcd import EtcdServer, free_port

pytestmark = pytest.mark.etcd

SEED_SPEC = MANIFESTS / "seed" / "spec.yaml"
SEED_NAME = "my-caliconodestatus-1"
# A value as libcalico-go stores it (field order of its Go structs, no resourceVersion).
CALICO_VALUE = (
    '{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3",'
    '"metadata":{"name":"written-by-calico","uid":"7b1f5a1e-2b6f-4c43-9a51-0c1d2e3f4a5b",'
    '"creationTimestamp":"2021-09-10T12:00:00Z"},'
    '"spec":{"node":"calico-node-7","classes":["Agent","BGP"],"updatePeriodSeconds":30},'
    '"status":{"lastUpdated":"2021-09-10T12:05:00Z",'
    '"agent":{"birdV4":{"state":"Ready","version":"v0.3.3+birdv1.6.8","routerID":"172.17.0.3",'
    '"lastBootTime":"2021-09-10 12:00:01","lastReconfigurationTime":"2021-09-10 12:00:01"},"birdV6":{}},'
    '"bgp":{"numberEstablishedV4":1,"numberNotEstablishedV4":1,"numberEstablishedV6":0,'
    '"numberNotEstablishedV6":0,"peersV4":['
    '{"peerIP":"172.17.0.4","type":"NodeMesh","state":"Established","since":"2021-09-10 12:00:05"},'
    '{"peerIP":"172.17.0.5","type":"NodeMesh","state":"Active","since":"2021-09-10 12:00:05"}]},'
    '"routes":{}}}'
)


def stored_kvs(etcd: EtcdServer) -> list[tuple[str, int, dict[str, Any]]]:
    """(key, mod_revision, decoded JSON value) of every CalicoNodeStatus key, as etcdctl sees them."""
    reply = json.loads(etcd.etcdctl("get", "--prefix", RESOURCE_PREFIX, "-w", "json"))
    return [
        (etcd_text(kv["key"]), int(kv["mod_revision"]), json.loads(etcd_text(kv["value"])))
        for kv in reply.get("kvs", [])
    ]


@dataclass(frozen=True)
class EtcdConsole:
    """The console script pointed at etcd by flags or by Calico's environment names."""

    env: dict[str, str]
    options: list[str]
    unused_db: Path  # where a silent fall-back to the embedded store would write

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = run_console(self.env, *self.options, *args, stdin=stdin)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        return result.stdout


def etcd_console(etcd: EtcdServer, tmp_path: Path, how: str) -> EtcdConsole:
    env = console_base_env() | {"CALICO_NODESTATUS_DB": str(tmp_path / "must-stay-unused.db")}
    if how == "env":
        return EtcdConsole(env | etcd.datastore_env(), [], tmp_path / "must-stay-unused.db")
    options = ["--datastore-type", "etcdv3", "--etcd-endpoints", etcd.endpoint]
    return EtcdConsole(env, options, tmp_path / "must-stay-unused.db")


@pytest.fixture(params=["flags", "env"])
def each_way(request: pytest.FixtureRequest, etcd: EtcdServer, tmp_path: Path) -> Iterator[EtcdConsole]:
    chosen = etcd_console(etcd, tmp_path, request.param)
    yield chosen
    assert not chosen.unused_db.exists()


def test_apply_get_delete_store_calicos_key_and_json(each_way: EtcdConsole, etcd: EtcdServer) -> None:
    cli = each_way
    assert cli.ok("apply", "-f", str(SEED_SPEC)) == (
        "Successfully applied 1 'CalicoNodeStatus' resource(s)\n"
    )
    key, value = etcd.etcdctl("get", "--prefix", RESOURCE_PREFIX).splitlines()
    assert key == f"/calico/resources/v3/projectcalico.org/caliconodestatuses/{SEED_NAME}"
    stored = json.loads(value)
    assert list(stored)[:4] == ["kind", "apiVersion", "metadata", "spec"]
    assert (stored["apiVersion"], stored["kind"]) == ("projectcalico.org/v3", "CalicoNodeStatus")
    assert stored["spec"] == yaml.safe_load(SEED_SPEC.read_text())["spec"]
    assert stored["metadata"]["name"] == SEED_NAME
    assert stored["metadata"]["uid"] and stored["metadata"]["creationTimestamp"]
    assert "resourceVersion" not in stored["metadata"]

    shown = json.loads(cli.ok("get", "cns", SEED_NAME, "-o", "json"))
    ((_key, mod_revision, _value),) = stored_kvs(etcd)
    assert shown["metadata"]["resourceVersion"] == str(mod_revision)
    assert shown["metadata"]["uid"] == stored["metadata"]["uid"]

    changed = SEED_SPEC.read_text().replace("updatePeriodSeconds: 10", "updatePeriodSeconds: 20")
    cli.ok("apply", "-f", "-", stdin=changed)
    ((_key, new_revision, updated),) = stored_kvs(etcd)
    assert new_revision > mod_revision
    assert updated["spec"]["updatePeriodSeconds"] == 20
    assert updated["metadata"]["uid"] == stored["metadata"]["uid"]

    assert cli.ok("delete", "caliconodestatus", SEED_NAME) == (
        "Successfully deleted 1 'CalicoNodeStatus' resource(s)\n"
    )
    assert etcd.etcdctl("get", "--prefix", RESOURCE_PREFIX) == ""
    assert cli.ok("get", "cns", "-o", "name") == ""


def test_object_written_by_calico_is_shown_and_updated_without_losing_status(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    cli = etcd_console(etcd, tmp_path, "flags")
    etcd.etcdctl("put", RESOURCE_PREFIX + "written-by-calico", CALICO_VALUE)
    ((_key, mod_revision, _value),) = stored_kvs(etcd)
    shown = json.loads(cli.ok("get", "cns", "written-by-calico", "-o", "json"))
    expected = json.loads(CALICO_VALUE)
    expected["metadata"]["resourceVersion"] = str(mod_revision)
    assert {key: shown[key] for key in ("metadata", "spec")} == {
        key: expected[key] for key in ("metadata", "spec")
    }
    assert shown["status"]["bgp"]["peersV4"] == expected["status"]["bgp"]["peersV4"]
    assert shown["status"]["agent"]["birdV4"]["routerID"] == "172.17.0.3"

    header, row = cli.ok("get", "cns", "-o", "wide").splitlines()[:2]
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["NODE"] == "calico-node-7"
    assert cells["AGENT"] == "stale"  # it has status, but no agent of ours keeps a liveness record
    assert cells["ESTABLISHED-V4"] == "1/2"

    spec_only = yaml.safe_dump({k: v for k, v in expected.items() if k != "status"})
    cli.ok("apply", "-f", "-", stdin=spec_only.replace("Agent", "Routes"))
    ((_key, _revision, updated),) = stored_kvs(etcd)
    assert updated["spec"]["classes"] == ["Routes", "BGP"]
    assert updated["status"] == expected["status"]  # a spec write keeps the agent-written status


@pytest.fixture(params=["refused", "silent"])
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}"
        return
    # Accepts connections (kernel backlog) but never speaks: the client must give up, not hang.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("output", ["ps", "wide"])
def test_unreachable_etcd_is_one_error_line_and_exit_1_without_hanging(
    dead_endpoint: str, output: str
) -> None:
    # Not hanging: the run ends by itself (run_console's deadline fails it otherwise); a silent
    # endpoint is given up on after the client's request timeout, which the error line states.
    options = ["--datastore-type", "etcdv3", "--etcd-endpoints", dead_endpoint]
    result = run_console(console_base_env(), *options, "get", "cns", "-o", output)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: etcd unreachable at {dead_endpoint}") or line.startswith(
        f"Error: etcd at {dead_endpoint} did not answer within {DEFAULT_REQUEST_TIMEOUT_S:g}s"
    ), line
