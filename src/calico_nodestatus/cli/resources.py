"""CLI commands for CalicoNodeStatus objects, in calicoctl/kubectl habits.

`create|apply|replace -f FILE|-`, `get caliconodestatus [NAME] -o ps|wide|yaml|json|name`,
`delete caliconodestatus NAME…` / `delete -f FILE`, and `crd` (prints the CRD manifest).

Writes from a file are all-or-nothing: every document is validated and every precondition (exists,
does not exist, resourceVersion) is checked before the first write, and if a write still fails
(another client raced us) the writes already made are undone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

import click

from calico_nodestatus.agent.stale import stale_pieces
from calico_nodestatus.api import (
    API_GROUP,
    CRD_V1_GROUP,
    KIND,
    MAX_UPDATE_PERIOD_SECONDS,
    CalicoNodeStatus,
    Manifest,
    NodeStatusClass,
    crd_yaml,
    dump_yaml,
    format_time,
    load_manifest_documents,
)
from calico_nodestatus.api.annotations import EXPIRES_AT_ANNOTATION, parse_expiry
from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.errors import user_errors
from calico_nodestatus.cli.store import run_with_datastore
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    DatastoreError,
    LivenessRecord,
    NotFound,
)

RESOURCE_NAMES: Final = ("caliconodestatus", "caliconodestatuses", "cns", "nodestatus", "nodestatuses")
OUTPUT_FORMATS: Final = ("ps", "wide", "yaml", "json", "name")
# Go text/tabwriter settings calicoctl uses: minimum cell width 5 (padding included), padding 3.
_MIN_CELL_WIDTH: Final = 5
_CELL_PADDING: Final = 3


class WriteMode(StrEnum):
    CREATE = "create"
    APPLY = "apply"
    REPLACE = "replace"


_PAST_TENSE: Final = {WriteMode.CREATE: "created", WriteMode.APPLY: "applied", WriteMode.REPLACE: "replaced"}


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cell: Callable[[CalicoNodeStatus], str]


def _established(obj: CalicoNodeStatus, family: str) -> str:
    bgp = obj.status.bgp
    peers = bgp.peers_v4 if family == "v4" else bgp.peers_v6
    established = bgp.number_established_v4 if family == "v4" else bgp.number_established_v6
    return f"{established}/{len(peers)}" if peers else "-"


class AgentState(StrEnum):
    """What `get -o wide` says about the agent that fills an object (see `agent_state`)."""

    ALIVE = "alive"
    STALE = "stale"
    NONE = "none"


def agent_state(obj: CalicoNodeStatus, live_nodes: AbstractSet[str]) -> AgentState:
    """alive: its node's liveness record is fresh. Expired records read as absent, so without one:
    stale if an agent once wrote status (it stopped renewing), none if no agent ever reported."""
    if obj.spec.node in live_nodes:
        return AgentState.ALIVE
    return AgentState.STALE if obj.status.last_updated is not None else AgentState.NONE


def live_nodes(records: list[LivenessRecord], now: datetime) -> frozenset[str]:
    return frozenset(record.node for record in records if record.is_alive(now))


_PS_COLUMNS: Final = [
    Column("NAME", lambda obj: obj.metadata.name),
    Column("NODE", lambda obj: obj.spec.node),
]


def wide_columns(alive: AbstractSet[str]) -> list[Column]:
    """The ps columns plus spec, freshness, sessions and stale pieces; `alive`: nodes with a live
    agent."""
    return [
        *_PS_COLUMNS,
        Column("CLASSES", lambda obj: ",".join(obj.spec.classes) or "-"),
        Column("PERIOD", lambda obj: f"{obj.spec.update_period_seconds}s"),
        Column(
            "LAST-UPDATED",
            lambda obj: format_time(obj.status.last_updated) if obj.status.last_updated else "-",
        ),
        Column("AGENT", lambda obj: agent_state(obj, alive)),
        Column("ESTABLISHED-V4", lambda obj: _established(obj, "v4")),
        Column("ESTABLISHED-V6", lambda obj: _established(obj, "v6")),
        Column("STALE", stale_cell),
        Column("EXPIRES", expiry_text),
    ]


def stale_cell(obj: CalicoNodeStatus) -> str:
    """The pieces (``BGP/v6``) whose data the agent could not collect and kept from before (or
    left out): what the collection-errors annotation names; "-" when everything is current."""
    return ",".join(stale_pieces(obj.metadata.annotations)) or "-"


def expiry_text(obj: CalicoNodeStatus) -> str:
    """The expiry annotation as the tables show it: the time, ``invalid`` (never deleted), or ``-``."""
    raw = obj.metadata.annotations.get(EXPIRES_AT_ANNOTATION)
    if not raw:
        return "-"
    expires = parse_expiry(raw)
    return format_time(expires) if expires else "invalid"


def render_table(columns: list[Column], objects: list[CalicoNodeStatus]) -> str:
    """A calicoctl-style table: left-aligned, every cell padded (also the last), then an empty line."""
    rows = [[column.header for column in columns]]
    rows += [[column.cell(obj) for column in columns] for obj in objects]
    widths = [
        max(_MIN_CELL_WIDTH, *(len(row[i]) + _CELL_PADDING for row in rows)) for i in range(len(columns))
    ]
    lines = ["".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines) + "\n\n"


def render_objects(
    objects: list[CalicoNodeStatus], output: str, *, single: bool, alive: AbstractSet[str] = frozenset()
) -> str:
    """`get` output. A single named object prints as itself; otherwise a list (a bare YAML list).
    `alive` (nodes whose agent is live) feeds the wide table's AGENT column."""
    if output in ("ps", "wide"):
        return render_table(wide_columns(alive) if output == "wide" else _PS_COLUMNS, objects)
    if output == "name":
        return "".join(f"caliconodestatus/{obj.metadata.name}\n" for obj in objects)
    wire: object = objects[0].to_wire() if single else [obj.to_wire() for obj in objects]
    if output == "json":
        return json.dumps(wire, indent=2) + "\n"
    return dump_yaml(wire)


def check_resource_type(resource: str) -> None:
    if resource.lower() not in RESOURCE_NAMES:
        raise click.ClickException(
            f"unknown resource type '{resource}' (expected one of: {', '.join(RESOURCE_NAMES)})"
        )


def read_input(filename: str) -> str:
    """The text of FILE, or of stdin for `-`."""
    if filename == "-":
        return sys.stdin.read()
    try:
        return Path(filename).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"cannot read {filename}: {reason}") from None


class ManifestWriteError(DatastoreError):
    """A datastore error for one document of the input; names the document."""

    def __init__(self, manifest: Manifest, error: DatastoreError) -> None:
        super().__init__(f"{manifest.where} ({manifest.object.name}): {error}")


@dataclass(frozen=True, slots=True)
class _Done:
    """A write made, and what it replaced (None: it created the object; `after` None: it deleted)."""

    name: str
    before: CalicoNodeStatus | None
    after: CalicoNodeStatus | None


async def _current(datastore: Datastore, name: str) -> CalicoNodeStatus | None:
    try:
        return await datastore.get(name)
    except NotFound:
        return None


def _check_precondition(mode: WriteMode, obj: CalicoNodeStatus, current: CalicoNodeStatus | None) -> None:
    """Raises what the write would raise, before anything is written."""
    wanted = obj.metadata.resource_version
    if mode is WriteMode.CREATE:
        if current is not None:
            raise AlreadyExists(obj.name)
    elif current is None:
        # apply of an absent object creates it: a resourceVersion in the input (a saved `get`
        # output) is server-managed metadata, ignored on create like uid and generation.
        if mode is WriteMode.REPLACE:
            raise NotFound(obj.name)
    elif wanted and wanted != current.metadata.resource_version:
        raise Conflict(obj.name)


def _for_create(obj: CalicoNodeStatus) -> CalicoNodeStatus:
    """Server-managed metadata in the input is ignored on create (a saved `get` output re-creates)."""
    metadata = obj.metadata.model_copy(
        update={"uid": None, "creation_timestamp": None, "generation": None, "resource_version": None}
    )
    return obj.model_copy(update={"metadata": metadata})


def _for_update(obj: CalicoNodeStatus, current: CalicoNodeStatus) -> CalicoNodeStatus:
    """The input's resourceVersion is the precondition; without one, the current object's is used."""
    revision = obj.metadata.resource_version or current.metadata.resource_version
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"resource_version": revision})})


async def _undo(datastore: Datastore, done: list[_Done]) -> None:
    """Best-effort rollback of writes already made, newest first."""
    for write in reversed(done):
        try:
            if write.after is None and write.before is not None:
                await datastore.create(write.before)
            elif write.before is None and write.after is not None:
                await datastore.delete(write.name, write.after.metadata.resource_version)
            elif write.before is not None and write.after is not None:
                revision = write.after.metadata.resource_version
                restored = write.before.metadata.model_copy(update={"resource_version": revision})
                await datastore.update(write.before.model_copy(update={"metadata": restored}))
        except DatastoreError as exc:
            click.echo(f"Warning: could not undo the write of {write.name}: {exc}", err=True)


async def write_manifests(datastore: Datastore, mode: WriteMode, manifests: list[Manifest]) -> int:
    """Creates/applies/replaces every object, all-or-nothing; returns how many were written."""
    currents: list[CalicoNodeStatus | None] = []
    for manifest in manifests:
        current = await _current(datastore, manifest.object.name)
        try:
            _check_precondition(mode, manifest.object, current)
        except DatastoreError as exc:
            raise ManifestWriteError(manifest, exc) from None
        currents.append(current)
    done: list[_Done] = []
    for manifest, current in zip(manifests, currents, strict=True):
        try:
            if current is None:
                written = await datastore.create(_for_create(manifest.object))
            else:
                written = await datastore.update(_for_update(manifest.object, current))
        except DatastoreError as exc:
            await _undo(datastore, done)
            raise ManifestWriteError(manifest, exc) from None
        done.append(_Done(manifest.object.name, current, written))
    return len(done)


async def delete_objects(datastore: Datastore, targets: list[tuple[str, str | None, Manifest | None]]) -> int:
    """Deletes (name, resourceVersion precondition, source manifest) targets, all-or-nothing."""

    def failure(name: str, manifest: Manifest | None, exc: DatastoreError) -> DatastoreError:
        return ManifestWriteError(manifest, exc) if manifest else exc

    for name, revision, manifest in targets:
        current = await _current(datastore, name)
        if current is None:
            raise failure(name, manifest, NotFound(name))
        if revision and revision != current.metadata.resource_version:
            raise failure(name, manifest, Conflict(name))
    done: list[_Done] = []
    for name, revision, manifest in targets:
        try:
            deleted = await datastore.delete(name, revision)
        except DatastoreError as exc:
            await _undo(datastore, done)
            raise failure(name, manifest, exc) from None
        done.append(_Done(name, deleted, None))
    return len(done)


def _warn_ignored_status(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        if not manifest.object.status.is_empty():
            click.echo(
                f"Warning: {manifest.where} ({manifest.object.name}): "
                "status is ignored; only the agent writes it",
                err=True,
            )


def _write_command(mode: WriteMode) -> click.Command:
    @click.command(name=str(mode), help=f"{mode.capitalize()} CalicoNodeStatus objects from a file or stdin.")
    @click.option("-f", "--filename", required=True, help="YAML or JSON manifest; '-' reads stdin.")
    @click.pass_obj
    @user_errors
    def command(ctx: CliContext, filename: str) -> None:
        manifests = load_manifest_documents(read_input(filename))
        _warn_ignored_status(manifests)
        count = run_with_datastore(ctx, lambda datastore: write_manifests(datastore, mode, manifests))
        click.echo(f"Successfully {_PAST_TENSE[mode]} {count} '{KIND}' resource(s)")

    return command


def _apply_command() -> click.Command:
    from calico_nodestatus.cli.allnodes import TTL, Classes, apply_all_nodes, with_expiry

    @click.command(name="apply")
    @click.option("-f", "--filename", help="YAML or JSON manifest; '-' reads stdin.")
    @click.option("--all-nodes", is_flag=True, help="One object per known node (nodestatus-<node>).")
    @click.option("--classes", type=Classes(), help="With --all-nodes: e.g. BGP or Agent,BGP,Routes.")
    @click.option(
        "--period", type=click.IntRange(0, MAX_UPDATE_PERIOD_SECONDS), default=30, show_default=True,
        help="With --all-nodes: updatePeriodSeconds.",
    )  # fmt: skip
    @click.option(
        "--ttl", type=TTL(),
        help="Delete the objects this long after now (20s, 30m, 2h): the agent of each node does, "
        "by the nodestatus.projectcalico.org/expires-at annotation. Applying again renews it.",
    )  # fmt: skip
    @click.pass_obj
    @user_errors
    def command(
        ctx: CliContext,
        *,
        filename: str | None,
        all_nodes: bool,
        classes: list[NodeStatusClass] | None,
        period: int,
        ttl: timedelta | None,
    ) -> None:
        """Apply CalicoNodeStatus objects from a file or stdin (-f), or one per known node
        (--all-nodes --classes ...): Kubernetes Node objects, Calico node resources on etcd, and every
        node with a live agent. Existing objects are updated or left alone, never duplicated."""
        expires_at = datetime.now(UTC) + ttl if ttl else None
        if all_nodes == (filename is not None):
            raise click.UsageError("give either -f FILE or --all-nodes --classes CLASSES")
        if filename is not None:
            if classes:
                raise click.UsageError("--classes goes with --all-nodes; -f FILE holds the classes")
            manifests = load_manifest_documents(read_input(filename))
            _warn_ignored_status(manifests)
            manifests = [replace(m, object=with_expiry(m.object, expires_at)) for m in manifests]
            count = run_with_datastore(ctx, lambda ds: write_manifests(ds, WriteMode.APPLY, manifests))
            click.echo(f"Successfully applied {count} '{KIND}' resource(s)")
            return
        if not classes:
            raise click.UsageError("--all-nodes needs --classes (e.g. --classes BGP)")
        plans, warning = run_with_datastore(ctx, lambda ds: apply_all_nodes(ds, classes, period, expires_at))
        if warning:
            click.echo(f"Warning: {warning}", err=True)
        for plan in plans:
            what = "already reports those classes; left alone" if plan.action == "kept" else plan.action
            click.echo(f"{plan.node}: {plan.name} {what}")
        written = sum(1 for plan in plans if plan.desired is not None)
        expiry = f", expiring at {format_time(expires_at)}" if expires_at else ""
        click.echo(f"Successfully applied {written} '{KIND}' resource(s) for {len(plans)} nodes{expiry}")

    return command


@click.command(name="get")
@click.argument("resource")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="ps", show_default=True)
@click.option("--node", help="Only objects whose spec.node is NODE.")
@click.pass_obj
@user_errors
def get_command(ctx: CliContext, resource: str, name: str | None, output: str, node: str | None) -> None:
    """Show CalicoNodeStatus objects (RESOURCE: caliconodestatus, cns, nodestatus, …).

    \b
    -o wide adds an AGENT column from the agents' liveness records:
      alive  the object's node has a liveness record renewed within its TTL
      stale  no live record, but the object has status: its agent reported, then stopped
      none   no live record and no status yet: no agent has picked the object up
    and EXPIRES: when the node's agent deletes the object (apply --ttl), else -
    """
    check_resource_type(resource)

    async def fetch(datastore: Datastore) -> tuple[list[CalicoNodeStatus], list[LivenessRecord]]:
        if name is not None:
            objects = [await datastore.get(name)]
        else:
            listed, _revision = await datastore.list(node)
            objects = sorted(listed, key=lambda obj: obj.metadata.name)
        return objects, await datastore.list_liveness() if output == "wide" else []

    objects, liveness = run_with_datastore(ctx, fetch)
    alive = live_nodes(liveness, datetime.now(UTC))
    click.echo(render_objects(objects, output, single=name is not None, alive=alive), nl=False)


@click.command(name="delete")
@click.argument("resource", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", help="Delete the objects named in this manifest; '-' reads stdin.")
@click.pass_obj
@user_errors
def delete_command(
    ctx: CliContext, resource: str | None, names: tuple[str, ...], filename: str | None
) -> None:
    """Delete CalicoNodeStatus objects by name, or those in a manifest (all or none)."""
    targets: list[tuple[str, str | None, Manifest | None]]
    if filename is not None:
        if resource is not None:
            raise click.ClickException("give either -f FILE or RESOURCE NAME..., not both")
        manifests = load_manifest_documents(read_input(filename))
        targets = [(m.object.name, m.object.metadata.resource_version, m) for m in manifests]
    else:
        if resource is None or not names:
            raise click.ClickException(
                "expected RESOURCE NAME... (e.g. caliconodestatus my-status) or -f FILE"
            )
        check_resource_type(resource)
        targets = [(name, None, None) for name in dict.fromkeys(names)]
    count = run_with_datastore(ctx, lambda datastore: delete_objects(datastore, targets))
    click.echo(f"Successfully deleted {count} '{KIND}' resource(s)")


@click.command(name="crd")
@click.option(
    "--group",
    type=click.Choice([CRD_V1_GROUP, API_GROUP]),
    default=CRD_V1_GROUP,
    show_default=True,
    help=f"{CRD_V1_GROUP}: Calico's storage CRD (v1); {API_GROUP}: the v3 CRD.",
)
def crd_command(group: str) -> None:
    """Print the CalicoNodeStatus CustomResourceDefinition (also in deploy/crd.yaml)."""
    sys.stdout.write(crd_yaml(group))


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    for mode in (WriteMode.CREATE, WriteMode.REPLACE):
        cli.add_command(_write_command(mode))
    cli.add_command(_apply_command())
    cli.add_command(get_command)
    cli.add_command(delete_command)
    cli.add_command(crd_command)
