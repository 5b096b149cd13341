"""CLI commands: agent — fill this node's CalicoNodeStatus objects from BIRD until stopped."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from pathlib import Path

import click

from calico_nodestatus.agent.budget import DEFAULT_SIZE_BUDGET_BYTES, MIN_SIZE_BUDGET_BYTES
from calico_nodestatus.agent.runner import AgentSettings, NodeStatusAgent
from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.errors import user_errors
from calico_nodestatus.cli.store import datastore_config
from calico_nodestatus.datastore.config import open_datastore

_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|K|M)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024 * 1024, "mib": 1024 * 1024}
_NODE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ByteSize(click.ParamType):
    """A byte count: ``1048576``, ``64KiB``, ``1MiB``."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            size = value
        else:
            match = _SIZE_RE.match(str(value))
            if not match:
                self.fail(f"{value!r} is not a size: expected bytes, e.g. 1048576, 64KiB or 1MiB", param, ctx)
            size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
        if size < MIN_SIZE_BUDGET_BYTES:
            self.fail(f"{value!r} is too small: at least {MIN_SIZE_BUDGET_BYTES} bytes", param, ctx)
        return size


def _check_node(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if not value:
        raise click.BadParameter(
            "is required: the Calico node name whose CalicoNodeStatus objects this agent fills "
            "(or set NODENAME, as calico-node does)",
            ctx,
            param,
        )
    if not _NODE_RE.match(value):
        raise click.BadParameter(
            f"{value!r} is not a node name: expected a lower-case DNS-1123 subdomain", ctx, param
        )
    return value


@click.command("agent")
@click.option("--node", envvar="NODENAME", callback=_check_node, help="This node's name (env NODENAME).")
@click.option("--bird-socket", type=click.Path(dir_okay=False), help="BIRD (IPv4) control socket.")
@click.option("--bird6-socket", type=click.Path(dir_okay=False), help="BIRD6 control socket (BIRD 1.6).")
@click.option(
    "--size-budget",
    type=ByteSize(),
    default=DEFAULT_SIZE_BUDGET_BYTES,
    show_default=True,
    help="Largest serialised object; routes beyond it are left out (FIB kept first) and counted.",
)
@click.option(
    "--status-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CALICO_NODESTATUS_STATUS_FILE",
    help="Readiness/liveness file, replaced atomically (check it with `health --status-file`).",
)
@click.option(
    "--heartbeat-seconds",
    type=click.FloatRange(min=0.1, max=3600),
    default=5.0,
    show_default=True,
    help="How often the liveness record is renewed; it expires after 3 missed heartbeats.",
)
@click.option(
    "--resync-seconds",
    type=click.FloatRange(min=1, max=86400),
    default=30.0,
    show_default=True,
    help="How often the node's objects are listed again besides the watch.",
)
@click.pass_obj
@user_errors
def agent_command(
    cli_ctx: CliContext,
    *,
    node: str,
    bird_socket: str | None,
    bird6_socket: str | None,
    size_budget: int,
    status_file: Path | None,
    heartbeat_seconds: float,
    resync_seconds: float,
) -> None:
    """Keep every CalicoNodeStatus whose spec.node is NODE filled from this node's BIRD.

    Runs until SIGTERM/SIGINT; logs one `key=value` line per event (see --log-level).
    """
    from calico_nodestatus.agent.collection import bird_collector

    settings = AgentSettings(
        node=node,
        holder=f"{socket.gethostname()}/{os.getpid()}",
        size_budget_bytes=size_budget,
        heartbeat_seconds=heartbeat_seconds,
        liveness_ttl_seconds=3 * heartbeat_seconds,
        resync_seconds=resync_seconds,
        status_file=status_file,
    )
    config = datastore_config(cli_ctx)

    async def run() -> None:
        async with open_datastore(config) as datastore:
            collector = bird_collector(bird_socket, bird6_socket, size_budget)
            agent = NodeStatusAgent(datastore, settings, collector)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, agent.stop)
            await agent.run()

    asyncio.run(run())


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(agent_command)
