"""`apply --all-nodes`: one object per known node, never a duplicate, on every datastore.

Known nodes are the backend's own (a Kubernetes Node object, a Calico node resource in etcd) and
every node with a live agent (its liveness record); a node whose object already reports the
classes keeps it untouched. Bad flags are refused naming the flag, before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from calico_nodestatus.api.annotations import EXPIRES_AT_ANNOTATION, parse_expiry
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.etcd import NODE_PREFIX
from tests.cli.conftest import CliTarget, manifest

LIVE = "node-live"
COVERED = "node-covered"


@pytest.fixture
def registered_node(request: pytest.FixtureRequest, target: CliTarget) -> Iterator[str | None]:
    """A node the backend itself knows (none on the embedded datastore), with no agent."""
    name = "node-registered"
    if target.config.type == "kubernetes":
        plane = request.getfixturevalue("control_plane")
        plane.apply(f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n")
        yield name
        plane.kubectl("delete", "node", name, "--wait=false")
    elif target.config.type == "etcdv3":
        request.getfixturevalue("etcd").etcdctl("put", NODE_PREFIX + name, "{}")
        yield name  # the etcd fixture removes /calico/ keys afterwards
    else:
        yield None


async def _agents_alive(datastore: Datastore) -> None:
    for node in (LIVE, COVERED):
        await datastore.renew_liveness(node, f"test/{node}", 60)


def test_all_nodes_creates_one_object_per_known_node_and_never_duplicates(
    target: CliTarget, registered_node: str | None
) -> None:
    target.ok("create", "-f", "-", stdin=manifest("mine", node=COVERED, classes="[Agent, BGP]"))
    target.on_datastore(_agents_alive)
    before = datetime.now(UTC).replace(microsecond=0)

    result = target.ok("apply", "--all-nodes", "--classes", "BGP", "--period", "5", "--ttl", "30m")

    nodes = sorted([LIVE, COVERED, *([registered_node] if registered_node else [])])
    assert f"{COVERED}: mine already reports those classes; left alone" in result.stdout
    stored = {obj["metadata"]["name"]: obj for obj in target.stored()}
    expected = {"mine"} | {f"nodestatus-{n}" for n in nodes if n != COVERED}
    assert set(stored) == expected
    for node in nodes:
        if node == COVERED:
            continue
        obj = stored[f"nodestatus-{node}"]
        assert obj["spec"] == {"node": node, "classes": ["BGP"], "updatePeriodSeconds": 5}
        expiry = parse_expiry(obj["metadata"]["annotations"][EXPIRES_AT_ANNOTATION])
        assert expiry is not None and before + timedelta(minutes=30) <= expiry
    assert EXPIRES_AT_ANNOTATION not in stored["mine"]["metadata"].get("annotations", {})

    again = target.ok("apply", "--all-nodes", "--classes", "BGP", "--period", "5")
    assert again.stdout.count("unchanged") == len(nodes) - 1, again.stdout
    changed = target.ok("apply", "--all-nodes", "--classes", "BGP,Routes", "--period", "7")
    assert f"{LIVE}: nodestatus-{LIVE} updated" in changed.stdout
    assert f"{COVERED}: nodestatus-{COVERED} created" in changed.stdout  # mine has no Routes
    after = {obj["metadata"]["name"]: obj for obj in target.stored()}
    assert set(after) == expected | {f"nodestatus-{COVERED}"}
    assert after[f"nodestatus-{LIVE}"]["spec"] == {
        "node": LIVE,
        "classes": ["BGP", "Routes"],
        "updatePeriodSeconds": 7,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all-nodes"], "--all-nodes needs --classes"),
        (["--all-nodes", "--classes", "BGP,Bogus"], "'--classes'"),
        (["--all-nodes", "--classes", "BGP", "--ttl", "0s"], "'--ttl'"),
        (["--all-nodes", "--classes", "BGP", "--ttl", "soon"], "'--ttl'"),
        (["--all-nodes", "--classes", "BGP", "--period", "-1"], "'--period'"),
        (["--all-nodes", "-f", "x.yaml"], "either -f FILE or --all-nodes"),
    ],
)
def test_bad_flags_are_refused_naming_them_and_nothing_is_written(
    target: CliTarget, args: list[str], message: str
) -> None:
    target.on_datastore(_agents_alive)
    result = target.run("apply", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert target.stored() == []
