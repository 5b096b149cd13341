"""CLI commands: summary — the fleet view of every CalicoNodeStatus, unhealthy nodes first."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import click

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION, read_annotation
from calico_nodestatus.agent.stale import stale_pieces
from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.api.model import format_time
from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.errors import user_errors
from calico_nodestatus.cli.resources import AgentState, agent_state, expiry_text, live_nodes
from calico_nodestatus.cli.store import run_with_datastore
from calico_nodestatus.datastore.base import Datastore, LivenessRecord

NONE = "-"


@dataclass(frozen=True, slots=True)
class FleetRow:
    name: str
    node: str
    agent: AgentState  # the rule of `get -o wide`'s AGENT column
    bird_v4: str
    bird_v6: str
    established_v4: int
    not_established_v4: int
    established_v6: int
    not_established_v6: int
    routes_v4: int
    routes_v6: int
    omitted_v4: int
    omitted_v6: int
    last_updated: str
    stale: tuple[str, ...]  # pieces (``BGP/v6``) kept from before or left out: not collected
    classes: str
    period: int
    expires: str  # the expiry annotation (apply --ttl), "-" without one
    problems: tuple[str, ...]

    @property
    def sessions_down(self) -> bool:
        return self.not_established_v4 + self.not_established_v6 > 0


_AGENT_PROBLEMS = {AgentState.STALE: "agent stale", AgentState.NONE: "no agent"}


def _omitted(obj: CalicoNodeStatus) -> tuple[int, int]:
    counts, _cut_short = read_annotation(obj.metadata.annotations.get(ROUTES_OMITTED_ANNOTATION))
    return counts.get("v4", 0), counts.get("v6", 0)


def fleet_rows(
    objects: Iterable[CalicoNodeStatus], liveness: Iterable[LivenessRecord], now: datetime
) -> list[FleetRow]:
    """One row per object, unhealthy ones first (then by node and name). Pure."""
    alive = live_nodes(list(liveness), now)
    rows = []
    for obj in objects:
        status, spec = obj.status, obj.spec
        bgp = status.bgp
        omitted_v4, omitted_v6 = _omitted(obj)
        states = (status.agent.bird_v4.state, status.agent.bird_v6.state)
        agent = agent_state(obj, alive)
        problems = []
        if agent is not AgentState.ALIVE:
            problems.append(_AGENT_PROBLEMS[agent])
        if status.last_updated is None:
            problems.append("never reported")
        if "NotReady" in states:
            problems.append("BIRD not ready")
        if bgp.number_not_established_v4 + bgp.number_not_established_v6:
            problems.append("sessions down")
        stale = stale_pieces(obj.metadata.annotations)
        if stale:
            problems.append(f"STALE {','.join(stale)}")
        rows.append(
            FleetRow(
                name=obj.name,
                node=spec.node,
                agent=agent,
                bird_v4=str(states[0] or NONE),
                bird_v6=str(states[1] or NONE),
                established_v4=bgp.number_established_v4,
                not_established_v4=bgp.number_not_established_v4,
                established_v6=bgp.number_established_v6,
                not_established_v6=bgp.number_not_established_v6,
                routes_v4=len(status.routes.routes_v4),
                routes_v6=len(status.routes.routes_v6),
                omitted_v4=omitted_v4,
                omitted_v6=omitted_v6,
                last_updated=format_time(status.last_updated) if status.last_updated else NONE,
                stale=stale,
                classes=",".join(spec.classes),
                period=spec.update_period_seconds,
                expires=expiry_text(obj),
                problems=tuple(problems),
            )
        )
    return sorted(rows, key=lambda row: (not row.problems, row.node, row.name))


def verdict(rows: list[FleetRow]) -> str:
    """One line: how many nodes have which problem (a node counts once per problem)."""
    nodes = {row.node for row in rows}
    if not nodes:
        return "no CalicoNodeStatus objects: nothing is being reported"
    parts = []
    for label, test in (
        ("have sessions down", lambda row: row.sessions_down),
        ("have BIRD not ready", lambda row: "BIRD not ready" in row.problems),
        ("have stale data", lambda row: bool(row.stale)),
        ("have a stale agent", lambda row: row.agent is AgentState.STALE),
        ("have no agent", lambda row: row.agent is AgentState.NONE),
        ("have never reported", lambda row: row.last_updated == NONE),
    ):
        affected = {row.node for row in rows if test(row)}
        if affected:
            parts.append(f"{len(affected)} of {len(nodes)} nodes {label}")
    noun = "node" if len(nodes) == 1 else "nodes"
    return "; ".join(parts) if parts else f"all {len(nodes)} {noun} healthy"


def _with_omitted(count: int, omitted: int) -> str:
    return f"{count}(+{omitted})" if omitted else str(count)


def render_table(rows: list[FleetRow], wide: bool) -> str:
    header = [
        "NODE",
        "AGENT",
        "BIRD V4/V6",
        "SESSIONS V4",
        "SESSIONS V6",
        "ROUTES V4/V6",
        "LAST UPDATED",
        "STALE",
        "EXPIRES",
    ]
    if wide:
        header = ["NAME", *header, "CLASSES", "PERIOD", "PROBLEMS"]
    table = [header]
    for row in rows:
        cells = [
            row.node,
            row.agent,
            f"{row.bird_v4}/{row.bird_v6}",
            f"{row.established_v4} up, {row.not_established_v4} down",
            f"{row.established_v6} up, {row.not_established_v6} down",
            f"{_with_omitted(row.routes_v4, row.omitted_v4)}/{_with_omitted(row.routes_v6, row.omitted_v6)}",
            row.last_updated,
            ",".join(row.stale) or NONE,
            row.expires,
        ]
        if wide:
            cells = [row.name, *cells, row.classes, str(row.period), ", ".join(row.problems) or NONE]
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    return "\n".join([*lines, "", verdict(rows)])


def render_json(rows: list[FleetRow]) -> str:
    items = [{**asdict(row), "problems": list(row.problems), "stale": list(row.stale)} for row in rows]
    return json.dumps({"items": items, "verdict": verdict(rows)}, indent=2)


async def _load(datastore: Datastore) -> tuple[list[CalicoNodeStatus], list[LivenessRecord]]:
    objects, _revision = await datastore.list()
    return objects, await datastore.list_liveness()


@click.command("summary")
@click.option(
    "-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table", show_default=True
)
@click.pass_obj
@user_errors
def summary_command(cli_ctx: CliContext, output: str) -> None:
    """Every CalicoNodeStatus in one table: agent alive/stale/none (as `get -o wide`), BIRD, sessions,
    routes; unhealthy first."""
    objects, liveness = run_with_datastore(cli_ctx, _load)
    rows = fleet_rows(objects, liveness, datetime.now(UTC))
    click.echo(render_json(rows) if output == "json" else render_table(rows, wide=output == "wide"))


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(summary_command)
