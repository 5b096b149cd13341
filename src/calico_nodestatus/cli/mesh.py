"""CLI commands: mesh — every node pair's BGP sessions, both ends side by side, from the datastore.

``--watch`` follows the datastore's watch (no polling): it redraws after every change of a
CalicoNodeStatus, and at the moment the next known liveness record runs out (an agent that stops
renewing turns into "no data" without any object changing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click

from calico_nodestatus.agent.backoff import Backoff
from calico_nodestatus.api import CalicoNodeStatus, dump_yaml
from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.errors import user_errors
from calico_nodestatus.cli.resources import live_nodes
from calico_nodestatus.cli.store import datastore_config, run_with_datastore
from calico_nodestatus.datastore.base import (
    Datastore,
    DatastoreError,
    EventType,
    LivenessRecord,
    WatchEvent,
    WatchExpired,
)
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.mesh import Mesh, build_mesh, render_dot, render_text, to_data

OUTPUTS = ("table", "json", "yaml", "dot")
CLEAR_SCREEN = "\x1b[H\x1b[2J"
# Events arriving together (agents writing in the same second) make one redraw.
SETTLE_SECONDS = 0.2


def render(mesh: Mesh, output: str, colour: bool) -> str:
    if output == "json":
        return json.dumps(to_data(mesh), indent=2)
    if output == "yaml":
        return dump_yaml(to_data(mesh)).rstrip("\n")
    if output == "dot":
        return render_dot(mesh).rstrip("\n")
    styled = (lambda text, fg: click.style(text, fg=fg) if fg else text) if colour else (lambda text, _: text)
    return render_text(mesh, styled)


def _mesh(objects: list[CalicoNodeStatus], liveness: list[LivenessRecord]) -> Mesh:
    now = datetime.now(UTC)
    return build_mesh(objects, live_nodes(liveness, now), now)


async def _load(datastore: Datastore) -> tuple[list[CalicoNodeStatus], list[LivenessRecord]]:
    objects, _revision = await datastore.list()
    return objects, await datastore.list_liveness()


def _next_expiry(liveness: list[LivenessRecord], now: datetime) -> float | None:
    """Seconds until the first live record runs out, unless renewed (just after, so it reads expired)."""
    left = [r.ttl_seconds - (now - r.renewed_at).total_seconds() for r in liveness if r.is_alive(now)]
    return max(0.0, min(left)) + 0.5 if left else None


class _Watcher:
    def __init__(self, datastore: Datastore, draw: Callable[[Mesh], None]) -> None:
        self._datastore = datastore
        self._draw = draw
        self._objects: dict[str, CalicoNodeStatus] = {}
        self._events: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        self.last: Mesh | None = None

    async def _follow(self, revision: str) -> None:
        try:
            async for event in self._datastore.watch(revision):
                self._events.put_nowait(event)
        except (DatastoreError, OSError) as exc:
            self._events.put_nowait(exc)

    def _apply(self, event: WatchEvent) -> None:
        if event.type is EventType.DELETED:
            self._objects.pop(event.object.name, None)
        else:
            self._objects[event.object.name] = event.object

    async def _redraw(self) -> float | None:
        liveness = await self._datastore.list_liveness()
        self.last = _mesh(list(self._objects.values()), liveness)
        self._draw(self.last)
        return _next_expiry(liveness, datetime.now(UTC))

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            follower: asyncio.Task[None] | None = None
            try:
                listed, revision = await self._datastore.list()
                self._objects = {obj.name: obj for obj in listed}
                follower = asyncio.create_task(self._follow(revision))
                timeout = await self._redraw()
                backoff.reset()
                while True:
                    try:
                        item = await asyncio.wait_for(self._events.get(), timeout)
                    except TimeoutError:
                        timeout = await self._redraw()  # a liveness record ran out
                        continue
                    if isinstance(item, BaseException):
                        raise item
                    self._apply(item)
                    await asyncio.sleep(SETTLE_SECONDS)
                    while not self._events.empty():
                        queued = self._events.get_nowait()
                        if isinstance(queued, BaseException):
                            raise queued
                        self._apply(queued)
                    timeout = await self._redraw()
            except WatchExpired:
                continue  # re-list at once
            except (DatastoreError, OSError) as exc:
                delay = backoff.next_delay()
                click.echo(f"Warning: {exc}; retrying in {delay:.1f}s", err=True)
                await asyncio.sleep(delay)
            finally:
                if follower is not None:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
                self._events = asyncio.Queue()


def _watch(cli_ctx: CliContext, output: str, colour: bool, terminal: bool) -> int:
    def draw(mesh: Mesh) -> None:
        text = render(mesh, output, colour)
        if terminal:
            click.echo(CLEAR_SCREEN + text, color=colour)
        elif output == "json":
            click.echo(json.dumps(to_data(mesh)))  # JSON Lines: one document per redraw
        else:
            click.echo(("---\n" if output == "yaml" else "") + text + "\n", color=colour)
        sys.stdout.flush()

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with open_datastore(datastore_config(cli_ctx)) as datastore:
            watcher = _Watcher(datastore, draw)
            task = asyncio.create_task(watcher.run())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
            for pending in (task, stopper):
                pending.cancel()
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
            return watcher.last.exit_code if watcher.last else 2

    return asyncio.run(run())


@click.command("mesh")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True)
@click.option("--watch", is_flag=True, help="Redraw whenever a status changes (a datastore watch).")
@click.option(
    "--color/--no-color", "color", default=None, help="Colour the matrix (default: only on a terminal)."
)
@click.pass_obj
@user_errors
def mesh_command(cli_ctx: CliContext, output: str, watch: bool, color: bool | None) -> None:
    """Every pair of nodes that report the BGP class, both ends of each session side by side
    (IPv4 and IPv6 matrices; global peers and route reflectors as columns of their own), and
    verdicts, worst first, that say where a failure is: node isolated, pair broken, one-sided,
    asymmetric configuration, AS mismatch, duplicate router IDs, stale agent (no data).

    Fill it with `apply --all-nodes --classes BGP --ttl 30m`. Exit 0 when every session is
    Established at both ends, 1 when any verdict is a failure, 2 when there are only warnings
    (or nothing to show)."""
    terminal = sys.stdout.isatty()
    colour = terminal if color is None else color
    if watch:
        sys.exit(_watch(cli_ctx, output, colour, terminal))
    mesh = _mesh(*run_with_datastore(cli_ctx, _load))
    click.echo(render(mesh, output, colour), color=colour)
    sys.exit(mesh.exit_code)


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(mesh_command)
