"""CLI test set-up: the real console commands against a real datastore.

`target` is parametrised over datastore backends (the embedded SQLite file, a real etcd server,
and the real kube-apiserver of tests/plugins/kubernetes.py in both CRD modes), so the same CLI tests and the
bad-manifest corpus run against each; a backend joins by adding a param that builds its `CliTarget`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

from calico_nodestatus.cli.main import cli
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.etcd import RESOURCE_PREFIX
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION, V3_API_VERSION
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.plugins.etcd import CALICO_PREFIX, EtcdServer
from tests.plugins.kubernetes import clean_kubernetes

KUBE_MODES = {"kubernetes-v1": V1_API_VERSION, "kubernetes-v3": V3_API_VERSION}

MANIFESTS = Path(__file__).parent.parent / "fixtures" / "manifests"
# Every variable that could select a datastore behind the test's back.
DATASTORE_ENV = (
    "DATASTORE_TYPE",
    "CALICO_NODESTATUS_DB",
    "ETCD_ENDPOINTS",
    "ETCD_CA_CERT_FILE",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "KUBECONFIG",
    "CALICO_API_GROUP",
)

T = TypeVar("T")
# name -> (revision, stored value), read from the backend itself rather than through the CLI.
RawContent = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class CliTarget:
    """Global options selecting one datastore, and helpers to run commands against it."""

    global_args: list[str]
    config: DatastoreConfig  # the same datastore, for set-up through the datastore API
    raw_content: Callable[[], RawContent]
    env: dict[str, str] = field(default_factory=dict)  # besides global_args (the API group)

    def run(self, *args: str, stdin: str | None = None) -> Result:
        # Isolated from the caller's DATASTORE_TYPE etc.: only global_args (and env) choose the datastore.
        env: dict[str, str | None] = {**dict.fromkeys(DATASTORE_ENV), **self.env}
        return CliRunner().invoke(cli, [*self.global_args, *args], input=stdin, env=env)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, result.output
        return result

    def stored(self) -> list[dict[str, object]]:
        """Every stored object as wire dicts (the datastore's whole content)."""
        return json.loads(self.ok("get", "caliconodestatus", "-o", "json").stdout)

    def on_datastore(self, operation: Callable[[Datastore], Awaitable[T]]) -> T:
        """Runs `operation` on this datastore through the datastore API (what an agent does)."""

        async def run() -> T:
            async with open_datastore(self.config) as datastore:
                return await operation(datastore)

        return asyncio.run(run())


async def _listed_content(datastore: Datastore) -> RawContent:
    objects, _revision = await datastore.list()
    return {
        obj.name: (obj.metadata.resource_version or "", json.dumps(obj.to_wire(), sort_keys=True))
        for obj in objects
    }


def _etcd_content(server: EtcdServer) -> RawContent:
    """What etcd holds under Calico's prefix: key name -> (mod_revision, JSON value)."""
    reply = json.loads(server.etcdctl("get", "--prefix", RESOURCE_PREFIX, "-w", "json"))
    return {
        etcd_text(kv["key"]).removeprefix(RESOURCE_PREFIX): (str(kv["mod_revision"]), etcd_text(kv["value"]))
        for kv in reply.get("kvs", [])
    }


def etcd_text(encoded: str) -> str:
    """etcdctl's JSON output base64-encodes keys and values."""
    return base64.b64decode(encoded).decode()


async def _delete_all(datastore: Datastore) -> None:
    objects, _revision = await datastore.list()
    for obj in objects:
        await datastore.delete(obj.name)


def _kubernetes_target(request: pytest.FixtureRequest, api_version: str) -> Iterator[CliTarget]:
    plane: ControlPlane = request.getfixturevalue("control_plane")  # tests/plugins/kubernetes.py
    config = DatastoreConfig(type="kubernetes", kubeconfig=plane.admin_kubeconfig, kube_api_group=api_version)
    cluster = CliTarget(
        ["--datastore-type", "kubernetes", "--kubeconfig", str(plane.admin_kubeconfig)],
        config,
        lambda: cluster.on_datastore(_listed_content),
        {"CALICO_API_GROUP": api_version},
    )
    clean_kubernetes(plane)
    yield cluster
    clean_kubernetes(plane)


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("etcdv3", marks=pytest.mark.etcd),
        pytest.param("kubernetes-v1", marks=pytest.mark.kubernetes),
        pytest.param("kubernetes-v3", marks=pytest.mark.kubernetes),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CliTarget]:
    if request.param.startswith("kubernetes-"):
        yield from _kubernetes_target(request, KUBE_MODES[request.param])
    elif request.param == "etcdv3":
        server: EtcdServer = request.getfixturevalue("etcd")  # removes /calico/ keys after the test
        server.etcdctl("del", "--prefix", CALICO_PREFIX)  # and starts from nothing, whatever ran before
        yield CliTarget(
            ["--datastore-type", "etcdv3", "--etcd-endpoints", server.endpoint],
            DatastoreConfig(type="etcdv3", etcd_endpoints=[server.endpoint]),
            lambda: _etcd_content(server),
        )
    else:
        db_path = tmp_path / "datastore.db"
        embedded = CliTarget(
            ["--datastore-type", "embedded", "--db", str(db_path)],
            DatastoreConfig(type="embedded", db_path=db_path),
            lambda: embedded.on_datastore(_listed_content),
        )
        yield embedded


def console_base_env() -> dict[str, str]:
    """This process's environment without any datastore selection."""
    return {key: value for key, value in os.environ.items() if key not in DATASTORE_ENV}


def run_console(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `calico-nodestatus` console script, as a user runs it."""
    script = Path(sys.executable).parent / "calico-nodestatus"
    return subprocess.run(
        [str(script), *args], input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def manifest(name: str, node: str = "node-1", classes: str = "[Agent, BGP]", period: int = 10) -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata:\n  name: {name}\n"
        f"spec:\n  node: {node}\n  classes: {classes}\n  updatePeriodSeconds: {period}\n"
    )
