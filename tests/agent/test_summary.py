"""`summary`: rows, ordering and verdict, on the real embedded datastore through the CLI."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from calico_nodestatus.agent.stale import COLLECTION_ERRORS_ANNOTATION
from calico_nodestatus.api import (
    BGPDaemonState,
    BGPDaemonStatus,
    CalicoNodeAgentStatus,
    CalicoNodeBGPStatus,
    CalicoNodeStatus,
    CalicoNodeStatusSpec,
    CalicoNodeStatusStatus,
    NodeStatusClass,
    ObjectMeta,
)
from calico_nodestatus.cli.main import cli
from calico_nodestatus.cli.summary import fleet_rows, verdict
from calico_nodestatus.datastore.base import LivenessRecord
from calico_nodestatus.datastore.embedded import EmbeddedDatastore

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _obj(node: str, down_v4: int = 0, ready: bool = True, reported: bool = True) -> CalicoNodeStatus:
    state = BGPDaemonState.READY if ready else BGPDaemonState.NOT_READY
    return CalicoNodeStatus(
        metadata=ObjectMeta(name=f"status-{node}"),
        spec=CalicoNodeStatusSpec(node=node, classes=list(NodeStatusClass), update_period_seconds=10),
        status=CalicoNodeStatusStatus(
            last_updated=NOW if reported else None,
            agent=CalicoNodeAgentStatus(
                bird_v4=BGPDaemonStatus(state=state), bird_v6=BGPDaemonStatus(state=state)
            ),
            bgp=CalicoNodeBGPStatus(number_established_v4=2 - down_v4, number_not_established_v4=down_v4),
        ),
    )


def _alive(*nodes: str) -> list[LivenessRecord]:
    return [LivenessRecord(node, "h/1", NOW - timedelta(seconds=1), 15.0) for node in nodes]


def test_unhealthy_first_and_verdict() -> None:
    objects = [_obj("n1"), _obj("n2", down_v4=1), _obj("n3"), _obj("n4", ready=False)]
    stale = [LivenessRecord("n3", "h/1", NOW - timedelta(seconds=60), 15.0)]
    rows = fleet_rows(objects, _alive("n1", "n2", "n4") + stale, NOW)
    assert [row.node for row in rows] == ["n2", "n3", "n4", "n1"]
    assert rows[1].agent == "stale" and rows[3].agent == "alive"
    assert rows[0].problems == ("sessions down",)
    assert verdict(rows).split("; ") == [
        "1 of 4 nodes have sessions down",
        "1 of 4 nodes have BIRD not ready",
        "1 of 4 nodes have a stale agent",
    ]
    healthy = fleet_rows([_obj("n1")], _alive("n1"), NOW)
    assert verdict(healthy) == "all 1 node healthy"
    assert verdict([]).startswith("no CalicoNodeStatus objects")


def test_cli_summary_reads_objects_and_liveness(tmp_path: Path) -> None:
    db = tmp_path / "ds.db"

    async def seed() -> None:
        async with EmbeddedDatastore(db) as store:
            for obj in (_obj("n1"), _obj("n2", down_v4=2)):
                created = await store.create(obj)
                await store.update_status(created.model_copy(update={"status": obj.status}))
            await store.renew_liveness("n1", "host/1", 30.0)

    asyncio.run(seed())
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "summary", "-o", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [(i["node"], i["agent"], i["not_established_v4"]) for i in document["items"]] == [
        ("n2", "stale", 2),
        ("n1", "alive", 0),
    ]
    assert document["verdict"] == "1 of 2 nodes have sessions down; 1 of 2 nodes have a stale agent"
    table = runner.invoke(cli, ["--db", str(db), "summary", "-o", "wide"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["NAME", "NODE", "AGENT"]
    assert lines[1].split()[:3] == ["status-n2", "n2", "stale"]
    assert lines[-1] == document["verdict"]


def test_agent_none_rule_matches_get_wide(tmp_path: Path) -> None:
    """No live record: stale if the object was ever reported, none if not; alive needs a fresh record.
    The AGENT column of `summary` and of `get -o wide` come from the same rule."""
    expired = [LivenessRecord("n-stale", "h/1", NOW - timedelta(seconds=60), 15.0)]
    objects = [_obj("n-alive", reported=False), _obj("n-stale"), _obj("n-none", reported=False)]
    rows = {row.node: row for row in fleet_rows(objects, _alive("n-alive") + expired, NOW)}
    assert {node: str(row.agent) for node, row in rows.items()} == {
        "n-alive": "alive",
        "n-stale": "stale",
        "n-none": "none",
    }
    assert rows["n-alive"].problems == ("never reported",)
    assert rows["n-stale"].problems == ("agent stale",)
    assert rows["n-none"].problems == ("no agent", "never reported")
    assert verdict(list(rows.values())).split("; ") == [
        "1 of 3 nodes have a stale agent",
        "1 of 3 nodes have no agent",
        "2 of 3 nodes have never reported",
    ]

    db = tmp_path / "ds.db"

    async def seed() -> None:
        async with EmbeddedDatastore(db) as store:
            for obj in objects:
                created = await store.create(obj)
                if obj.status.last_updated is not None:
                    await store.update_status(created.model_copy(update={"status": obj.status}))
            await store.renew_liveness("n-alive", "host/1", 30.0)

    asyncio.run(seed())
    runner = CliRunner()
    summary = runner.invoke(cli, ["--db", str(db), "summary", "-o", "json"])
    assert summary.exit_code == 0, summary.output
    from_summary = {item["node"]: item["agent"] for item in json.loads(summary.output)["items"]}
    wide = runner.invoke(cli, ["--db", str(db), "get", "caliconodestatus", "-o", "wide"])
    assert wide.exit_code == 0, wide.output
    header, *lines = [line.split() for line in wide.output.splitlines() if line.strip()]
    node_at, agent_at = header.index("NODE"), header.index("AGENT")
    from_get = {line[node_at]: line[agent_at] for line in lines}
    assert from_summary == from_get == {"n-alive": "alive", "n-stale": "stale", "n-none": "none"}


def test_stale_pieces_are_named_by_summary_and_get_wide(tmp_path: Path) -> None:
    """An object whose collection-errors annotation names pieces is STALE in `summary` (problems,
    STALE column, verdict) and in `get -o wide`'s STALE column; the others are not."""
    db = tmp_path / "ds.db"
    errors = json.dumps(
        {
            "BGP/v6": {"since": "2024-05-01T11:59:00Z", "error": "unable to connect", "content": "stale"},
            "Routes/v6": {"since": "2024-05-01T11:59:00Z", "error": "unable to connect", "content": "stale"},
        }
    )

    async def seed() -> None:
        async with EmbeddedDatastore(db) as store:
            for obj in (_obj("n1"), _obj("n2")):
                created = await store.create(obj)
                written = await store.update_status(created.model_copy(update={"status": obj.status}))
                if obj.spec.node == "n2":
                    await store.update_annotations(written, {COLLECTION_ERRORS_ANNOTATION: errors})
            for node in ("n1", "n2"):
                await store.renew_liveness(node, "host/1", 30.0)

    asyncio.run(seed())
    runner = CliRunner()
    document = json.loads(runner.invoke(cli, ["--db", str(db), "summary", "-o", "json"]).output)
    assert [(i["node"], i["stale"], i["problems"]) for i in document["items"]] == [
        ("n2", ["BGP/v6", "Routes/v6"], ["STALE BGP/v6,Routes/v6"]),
        ("n1", [], []),
    ]
    assert document["verdict"] == "1 of 2 nodes have stale data"
    table = runner.invoke(cli, ["--db", str(db), "summary"]).output.splitlines()
    # STALE is the last column but EXPIRES (headers hold spaces: count from the end).
    assert table[0].split()[-2:] == ["STALE", "EXPIRES"]
    stale = -2
    assert table[1].split()[stale] == "BGP/v6,Routes/v6" and table[1].split()[0] == "n2"
    assert table[2].split()[stale] == "-"
    wide = runner.invoke(cli, ["--db", str(db), "get", "cns", "-o", "wide"]).output.splitlines()
    assert wide[0].split()[-2:] == ["STALE", "EXPIRES"]
    cells = {line.split()[1]: line.split()[stale] for line in wide[1:3]}
    assert cells == {"n1": "-", "n2": "BGP/v6,Routes/v6"}
