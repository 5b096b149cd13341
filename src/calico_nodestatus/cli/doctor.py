"""CLI commands: `doctor` (BGP diagnosis on this node: verdicts with evidence and remedies)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import click

from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.cli.options import bird_socket_options
from calico_nodestatus.cli.store import datastore_config
from calico_nodestatus.datastore.base import DatastoreError
from calico_nodestatus.doctor import DoctorOptions, Report, Verdict, diagnose, gather_evidence
from calico_nodestatus.doctor.evidence import DEFAULT_CONNECT_TIMEOUT
from calico_nodestatus.health.autodetect import METHOD_SYNTAX, AutodetectError, parse_method

_MARKS = {Verdict.OK: "ok  ", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL"}


def render_text(report: Report) -> str:
    lines = [f"BGP doctor on node {report.node}"]
    for check in report.checks:
        lines.append(f"[{_MARKS[check.verdict]}] {check.check} {check.subject}: {check.summary}")
        if check.verdict is not Verdict.OK or check.check == "bird-socket":
            lines += [f"         - {item}" for item in check.evidence]
        if check.remedy and check.verdict is not Verdict.OK:
            lines.append(f"         remedy: {check.remedy}")
    counts = report.counts()
    lines.append(
        f"{counts['fail']} failed, {counts['warn']} warnings, {counts['ok']} ok (exit {report.exit_code})"
    )
    return "\n".join(lines)


@click.command("doctor")
@click.option("--node", envvar="NODENAME", help="This node's name (env NODENAME; default: the hostname).")
@bird_socket_options
@click.option(
    "--autodetection-method",
    envvar="IP_AUTODETECTION_METHOD",
    default="",
    help=f"calico-node's IPv4 method (env IP_AUTODETECTION_METHOD; default first-found): {METHOD_SYNTAX}.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each TCP connect to a peer's BGP port.",
)
@click.option(
    "--status-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CALICO_NODESTATUS_STATUS_FILE",
    help="The agent's status file: report what the agent says of itself (e.g. a datastore permission "
    "its identity lacks).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def doctor(
    obj: CliContext,
    *,
    node: str | None,
    bird_socket: str | None,
    bird6_socket: str | None,
    autodetection_method: str,
    connect_timeout: float,
    status_file: Path | None,
    output: str,
) -> None:
    """Diagnose BGP on this node (run it in the node's network namespace): BIRD daemons, every
    session that is not Established (with a real TCP connect to the peer's port 179 and BIRD's own
    error), the address BIRD peers from versus IP autodetection, duplicate addresses across nodes,
    the agent's liveness in the datastore, and (with --status-file) what the agent reports of itself.

    Exit 0 when everything is ok, 1 when any check fails, 2 when there are only warnings."""
    try:
        parse_method(autodetection_method)
    except AutodetectError as exc:
        raise click.ClickException(f"--autodetection-method (IP_AUTODETECTION_METHOD): {exc}") from None
    try:
        config = datastore_config(obj)
    except DatastoreError as exc:
        raise click.ClickException(str(exc)) from None
    options = DoctorOptions(
        node=node or socket.gethostname(),
        bird_socket=bird_socket or None,
        bird6_socket=bird6_socket or None,
        autodetection_method=autodetection_method,
        connect_timeout=connect_timeout,
        datastore=config,
        status_file=status_file,
    )
    report = diagnose(asyncio.run(gather_evidence(options)))
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(render_text(report))
    sys.exit(report.exit_code)


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(doctor)
