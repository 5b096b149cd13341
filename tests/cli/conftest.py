"""CLI test set-up: the real console commands against a real datastore.

`target` is parametrised over datastore backends so the same CLI tests (and the bad-manifest
corpus) run against each; a backend joins by adding a param that yields its global options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from calico_nodestatus.cli.main import cli

MANIFESTS = Path(__file__).parent.parent / "fixtures" / "manifests"


@dataclass(frozen=True)
class CliTarget:
    """Global options selecting one datastore, and helpers to run commands against it."""

    global_args: list[str]

    def run(self, *args: str, stdin: str | None = None) -> Result:
        # Isolated from the caller's DATASTORE_TYPE etc.: only global_args choose the datastore.
        env = {"DATASTORE_TYPE": None, "CALICO_NODESTATUS_DB": None, "ETCD_ENDPOINTS": None}
        return CliRunner().invoke(cli, [*self.global_args, *args], input=stdin, env=env)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, result.output
        return result

    def stored(self) -> list[dict[str, object]]:
        """Every stored object as wire dicts (the datastore's whole content)."""
        return json.loads(self.ok("get", "caliconodestatus", "-o", "json").stdout)


@pytest.fixture(params=["embedded"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> CliTarget:
    return CliTarget(["--datastore-type", "embedded", "--db", str(tmp_path / "datastore.db")])


def manifest(name: str, node: str = "node-1", classes: str = "[Agent, BGP]", period: int = 10) -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata:\n  name: {name}\n"
        f"spec:\n  node: {node}\n  classes: {classes}\n  updatePeriodSeconds: {period}\n"
    )
