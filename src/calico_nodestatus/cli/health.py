"""CLI commands: `health` (probe-style readiness/liveness checks) and `node ip` (autodetection)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from calico_nodestatus.cli.options import bird_socket_options
from calico_nodestatus.health.autodetect import (
    METHOD_SYNTAX,
    AutodetectError,
    AutodetectMethod,
    Detection,
    autodetect,
    parse_method,
)
from calico_nodestatus.health.bird import probe_bird
from calico_nodestatus.health.result import CheckResult
from calico_nodestatus.health.statusfile import StatusFileError, evaluate_status_report, read_status_file

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class GoDuration(click.ParamType):
    """A Go-style duration (`30s`, `1m30s`, `500ms`), as calico-node's `--threshold-time` takes."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        if text == "0":
            return timedelta(0)
        position, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if not text or position != len(text):
            self.fail(f"{text!r} is not a duration; expected e.g. 30s, 1m30s or 500ms", param, ctx)
        return timedelta(seconds=seconds)


DURATION = GoDuration()


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False))


# --- health ---------------------------------------------------------------------------------------


def _evidence(result: CheckResult) -> list[str]:
    """Lines under a failed check that say why (peer states with BIRD's own error text)."""
    return [
        f"  {peer['peerIP']} ({peer['protocol']}): {peer['info']}"
        for peer in result.details.get("notEstablished", [])
        if not result.ok
    ]


def _status_file_results(path: Path, max_age: timedelta | None, ready: bool, live: bool) -> list[CheckResult]:
    try:
        report = read_status_file(path)
    except StatusFileError as exc:
        wanted = [check for check, on in (("status-file-ready", ready), ("status-file-live", live)) if on]
        return [CheckResult(check=check, ok=False, message=str(exc)) for check in wanted]
    results = evaluate_status_report(report, now=datetime.now(UTC), max_age=max_age)
    return [
        r
        for r in results
        if (r.check == "status-file-ready" and ready) or (r.check == "status-file-live" and live)
    ]


async def _run_bird_probes(
    *,
    families: dict[int, tuple[bool, bool, str | None]],
    threshold: timedelta,
    window_start_file: Path | None,
) -> list[CheckResult]:
    probes = [
        probe_bird(
            family,
            ready=ready,
            live=live,
            threshold=threshold,
            socket_path=socket,
            window_start_file=window_start_file,
        )
        for family, (ready, live, socket) in families.items()
        if ready or live
    ]
    batches = await asyncio.gather(*probes)
    return [result for batch in batches for result in batch]


@click.command("health")
@click.option("--bird-ready", is_flag=True, help="BGP readiness of the IPv4 BIRD (calico-node semantics).")
@click.option("--bird6-ready", is_flag=True, help="BGP readiness of the IPv6 BIRD.")
@click.option("--bird-live", is_flag=True, help="The IPv4 BIRD answers `show status`.")
@click.option("--bird6-live", is_flag=True, help="The IPv6 BIRD answers `show status`.")
@click.option(
    "--threshold-time",
    type=DURATION,
    default="30s",
    show_default=True,
    help="Start-up window: inside it every BGP peer must be Established and no graceful restart running.",
)
@click.option(
    "--window-start-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Measure the window from this file's mtime (upstream: /var/lib/calico/nodename) "
    "instead of BIRD's last reboot.",
)
@bird_socket_options
@click.option(
    "--status-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Check the agent's status file too.",
)
@click.option("--status-ready", is_flag=True, help="With --status-file: check readiness only.")
@click.option("--status-live", is_flag=True, help="With --status-file: check liveness only.")
@click.option(
    "--status-max-age",
    type=DURATION,
    default=None,
    help="With --status-file: fail when it was not rewritten within this time (its writer is gone).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def health(
    *,
    bird_ready: bool,
    bird6_ready: bool,
    bird_live: bool,
    bird6_live: bool,
    threshold_time: timedelta,
    window_start_file: Path | None,
    bird_socket: str | None,
    bird6_socket: str | None,
    status_file: Path | None,
    status_ready: bool,
    status_live: bool,
    status_max_age: timedelta | None,
    output: str,
) -> None:
    """Readiness/liveness checks for probes: exit 0 when every selected check passes, else 1.

    Every check's result is printed (not only the first failure); failures use calico-node's
    wording, e.g. `calico/node is not ready: BIRD is not ready: BGP not established with 10.0.0.2`.
    Only the sockets of the selected families are touched (IPv6-only nodes: --bird6-ready alone).
    """
    if (status_ready or status_live or status_max_age is not None) and status_file is None:
        raise click.UsageError("--status-ready, --status-live and --status-max-age need --status-file")
    if not (bird_ready or bird6_ready or bird_live or bird6_live or status_file):
        click.echo(
            "calico/node check error: must specify at least one of --bird-ready, --bird6-ready, "
            "--bird-live, --bird6-live or --status-file"
        )
        raise SystemExit(1)
    results = asyncio.run(
        _run_bird_probes(
            families={4: (bird_ready, bird_live, bird_socket), 6: (bird6_ready, bird6_live, bird6_socket)},
            threshold=threshold_time,
            window_start_file=window_start_file,
        )
    )
    if status_file is not None:
        both = not (status_ready or status_live)
        results += _status_file_results(
            status_file, status_max_age, status_ready or both, status_live or both
        )
    ok = all(r.ok for r in results)
    if output == "json":
        _print_json({"ok": ok, "checks": [r.model_dump(mode="json") for r in results]})
    else:
        for result in results:
            click.echo(result.message)
            for line in _evidence(result):
                click.echo(line)
    raise SystemExit(0 if ok else 1)


# --- node ip ----------------------------------------------------------------------------------------


def _default_methods(family: int) -> list[str]:
    configured = os.environ.get("IP_AUTODETECTION_METHOD" if family == 4 else "IP6_AUTODETECTION_METHOD", "")
    methods = [configured or "first-found"]
    if str(parse_method(methods[0])) != "first-found":
        methods.append("first-found")  # for comparison: what the default would pick
    return methods


def _node_addresses(path: Path | None) -> list[dict[str, str]] | None:
    if path is None:
        return None
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--kubernetes-node") from None
    addresses = (document or {}).get("status", {}).get("addresses") if isinstance(document, dict) else None
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        raise click.BadParameter(
            f"{path}: expected a Kubernetes Node object with status.addresses (a list of {{type, address}})",
            param_hint="--kubernetes-node",
        )
    return addresses


def _render_detection(detection: Detection) -> list[str]:
    picked = f"{detection.address} on {detection.interface}" if detection.ok else "nothing"
    lines = [f"IPv{detection.family} {detection.method}: {picked}", f"  {detection.message}"]
    if detection.verdicts:
        lines.append("  interfaces (in visiting order):")
        width = max(len(f"{v.interface} ({v.index})") for v in detection.verdicts)
        lines += [
            f"    {v.outcome:<8}  {f'{v.interface} ({v.index})':<{width}}  {v.reason}"
            for v in detection.verdicts
        ]
    lines += [f"  warning: {warning}" for warning in detection.warnings]
    return lines


def _detect_all(
    methods: Sequence[AutodetectMethod], family: int, netns: str | None, node: list[dict[str, str]] | None
) -> list[Detection]:
    try:
        return [autodetect(method, family, netns=netns, node_addresses=node) for method in methods]
    except AutodetectError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("ip")
@click.option(
    "--method",
    "methods",
    multiple=True,
    help=f"Autodetection method (repeatable): {METHOD_SYNTAX}. "
    "Default: $IP_AUTODETECTION_METHOD (or IP6_...), else first-found, and first-found for comparison.",
)
@click.option("--ipv6", is_flag=True, help="Detect the IPv6 address instead of the IPv4 one.")
@click.option("--netns", help="Run inside this network namespace (a name from `ip netns list`).")
@click.option(
    "--kubernetes-node",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Node object (JSON/YAML, e.g. `kubectl get node N -o yaml`) for kubernetes-internal-ip.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def node_ip(
    methods: tuple[str, ...], ipv6: bool, netns: str | None, kubernetes_node: Path | None, output: str
) -> None:
    """What each IP autodetection method picks on this host, and why (exit 1 if one finds nothing)."""
    family = 6 if ipv6 else 4
    try:
        parsed = [parse_method(m) for m in (methods or _default_methods(family))]
    except AutodetectError as exc:
        raise click.BadParameter(str(exc), param_hint="--method") from None
    detections = _detect_all(parsed, family, netns, _node_addresses(kubernetes_node))
    if output == "json":
        _print_json([d.to_dict() for d in detections])
    else:
        click.echo("\n".join(line for d in detections for line in _render_detection(d)))
    raise SystemExit(0 if all(d.ok for d in detections) else 1)


def register(cli: click.Group) -> None:
    """Adds `health`; `node_ip` is registered by the `node` group as `node ip`."""
    cli.add_command(health)
