"""CLI commands: agent — fill this node's CalicoNodeStatus objects from BIRD until stopped, and
serve its Prometheus metrics.

Metrics wiring: the agent's collection hook feeds ``MetricsState`` (per-collection observations:
histograms, flaps, each section's latest value); everything the agent already counts (collections,
writes, objects, liveness) is read from ``agent.snapshot()`` at scrape time, so nothing is counted
twice. A scrape reads memory only and never waits on BIRD or the datastore."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import signal
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from calico_nodestatus.agent.budget import DEFAULT_SIZE_BUDGET_BYTES, MIN_SIZE_BUDGET_BYTES
from calico_nodestatus.agent.content import CollectedSections
from calico_nodestatus.agent.logs import log_event
from calico_nodestatus.agent.runner import (
    DEFAULT_HEARTBEAT_SECONDS,
    AgentSettings,
    AgentSnapshot,
    NodeStatusAgent,
)
from calico_nodestatus.api.model import NAME_PATTERN
from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.errors import user_errors
from calico_nodestatus.cli.options import bird_socket_options
from calico_nodestatus.cli.store import datastore_config
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.metrics.catalogue import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT
from calico_nodestatus.metrics.exporter import ExporterOptions, MetricsServer, build_registry
from calico_nodestatus.metrics.state import AgentView, MetricsState, ObjectView

log = logging.getLogger(__name__)

# grpc's EventEngine keeps a work-stealing thread pool whose idle threads wake every few ms after
# each RPC and every second besides: ≈ 0.05 % of a core for an agent whose only RPCs are a lease
# keepalive and a re-list. The classic iomgr path sleeps until there is work. Read by grpc when it
# initialises, so it is set before the etcd backend is imported; a value the operator set wins.
_GRPC_EXPERIMENTS_IDLE = ",".join(
    ("-event_engine_client", "-event_engine_callback_cq", "-event_engine_for_all_other_endpoints")
)
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|K|M)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024 * 1024, "mib": 1024 * 1024}
_NODE_RE = re.compile(NAME_PATTERN)  # spec.node's rule: the agent must match objects' nodes


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


# calico-node's IP/IP6 settings may name a method instead of an address; only addresses are reported.
_IP_KEYWORDS = frozenset({"", "autodetect", "none"})


def _check_ip(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value.strip().lower() in _IP_KEYWORDS:
        return None
    text = value.strip().split("/", 1)[0]  # calico-node accepts an address with its prefix length
    version = 4 if param.name == "ip" else 6
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise click.BadParameter(f"{value!r} is not an IPv{version} address", ctx, param)
    return str(address)


def _unix(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def agent_view(snapshot: AgentSnapshot, liveness_ttl_seconds: float) -> AgentView:
    """The agent's own bookkeeping in the exporter's terms (attempts = successes + failures)."""
    counters = snapshot.counters
    return AgentView(
        collections=counters.collections + counters.collection_failures,
        writes=counters.writes + counters.write_conflicts + counters.write_errors,
        write_conflicts=counters.write_conflicts,
        write_errors=counters.write_errors,
        objects=tuple(
            ObjectView(
                name,
                report.update_period_seconds,
                _unix(report.last_write_at),
                _unix(report.last_refresh_at),
                sum(snapshot.routes_omitted.get(name, {}).values()),
            )
            for name, report in snapshot.object_reports.items()
        ),
        liveness=_unix(snapshot.last_heartbeat_at),
        liveness_ttl=liveness_ttl_seconds,
    )


def _record_collection(state: MetricsState) -> Callable[[CollectedSections | None, datetime], None]:
    def record(collected: CollectedSections | None, at: datetime) -> None:
        if collected is None:
            state.record_collection_failure()
        elif collected.result is not None:
            state.record_result(collected.result, at)

    return record


def _metrics_server(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    try:
        return MetricsServer(registry, host, port)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            param_hint="'--metrics-host' / '--metrics-port'",
        ) from exc


@click.command("agent")
@click.option("--node", envvar="NODENAME", callback=_check_node, help="This node's name (env NODENAME).")
@bird_socket_options
@click.option(
    "--ip",
    envvar="IP",
    callback=_check_ip,
    help="This node's IPv4 BGP address (env IP, as calico-node), reported for the mesh view; "
    "without it the node is known by BIRD's router ID.",
)
@click.option("--ip6", envvar="IP6", callback=_check_ip, help="This node's IPv6 BGP address (env IP6).")
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
    default=DEFAULT_HEARTBEAT_SECONDS,
    show_default=True,
    help="How often the liveness record is renewed; it expires after 3 missed heartbeats "
    "(readers use the TTL stored in the record).",
)
@click.option(
    "--resync-seconds",
    type=click.FloatRange(min=1, max=86400),
    default=30.0,
    show_default=True,
    help="How often the node's objects are listed again besides the watch.",
)
@click.option(
    "--metrics-host",
    envvar="CALICO_NODESTATUS_METRICS_HOST",
    default=DEFAULT_METRICS_HOST,
    show_default=True,
    help="Address the Prometheus exporter listens on (env CALICO_NODESTATUS_METRICS_HOST).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    envvar="CALICO_NODESTATUS_METRICS_PORT",
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="Port of /metrics and /healthz; 0 disables the exporter (env CALICO_NODESTATUS_METRICS_PORT).",
)
@click.option(
    "--metrics-mesh-peers/--no-metrics-mesh-peers",
    default=False,
    show_default=True,
    help="Per-peer series for node-to-node mesh peers too (they grow with the square of the node count).",
)
@click.pass_obj
@user_errors
def agent_command(
    cli_ctx: CliContext,
    *,
    node: str,
    bird_socket: str | None,
    bird6_socket: str | None,
    ip: str | None,
    ip6: str | None,
    size_budget: int,
    status_file: Path | None,
    heartbeat_seconds: float,
    resync_seconds: float,
    metrics_host: str,
    metrics_port: int,
    metrics_mesh_peers: bool,
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
    os.environ.setdefault("GRPC_EXPERIMENTS", _GRPC_EXPERIMENTS_IDLE)
    state = MetricsState(node)

    async def run() -> None:
        async with open_datastore(config) as datastore:
            addresses = tuple(address for address in (ip, ip6) if address)
            collector = bird_collector(bird_socket, bird6_socket, size_budget, addresses)
            agent = NodeStatusAgent(datastore, settings, collector, on_collection=_record_collection(state))
            registry = build_registry(
                state,
                ExporterOptions(mesh_peer_series=metrics_mesh_peers),
                agent=lambda: agent_view(agent.snapshot(), settings.liveness_ttl_seconds),
            )
            server = _metrics_server(registry, metrics_host, metrics_port) if metrics_port else None
            loop = asyncio.get_running_loop()

            def stop_on(signum: signal.Signals) -> None:
                log_event(log, logging.INFO, "stop_requested", signal=signum.name)
                agent.stop()

            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop_on, signum)
            with server or contextlib.nullcontext():
                await agent.run()

    asyncio.run(run())


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(agent_command)
