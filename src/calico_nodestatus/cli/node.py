"""CLI commands: `node show` (one-shot collection, the status the agent would write),
`node status` (the `calicoctl node status` view) and `node ip` (IP autodetection, from cli/health)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from calico_nodestatus.api import NodeStatusClass, dump_yaml, format_time
from calico_nodestatus.bird.errors import BirdUnavailable
from calico_nodestatus.cli.health import node_ip
from calico_nodestatus.cli.options import bird_socket_options
from calico_nodestatus.collect.gather import ALL_CLASSES, BirdSockets, CollectionResult, gather
from calico_nodestatus.collect.sections import peer_ip

_PEER_TYPE_TEXT = {"Mesh": "node-to-node mesh", "Node": "node specific", "Global": "global"}
_FAMILY_NAMES = {4: ("IPv4", "BIRDv4", "bird"), 6: ("IPv6", "BIRDv6", "bird6")}


def _parse_classes(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[NodeStatusClass, ...]:
    if not value:
        return ALL_CLASSES
    allowed = {c.value.lower(): c for c in NodeStatusClass}
    chosen = []
    for word in (w.strip() for w in value.split(",")):
        if word.lower() not in allowed:
            names = ", ".join(c.value for c in NodeStatusClass)
            raise click.BadParameter(f"unknown class {word!r}; expected a comma-separated list of {names}")
        chosen.append(allowed[word.lower()])
    return tuple(chosen)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """ASCII box as calicoctl renders it: upper-case left-aligned header, no row separators."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=True)) + "|"

    return "\n".join([rule, line([h.upper() for h in headers]), rule, *(line(r) for r in rows), rule])


def _report_errors(result: CollectionResult) -> None:
    for (family, cls), error in sorted(result.errors.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        click.echo(f"warning: IPv{family} {cls.value}: {error}", err=True)


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""

    @cli.group("node")
    def node() -> None:
        """This node's BIRD: collect status once, or show BGP sessions like `calicoctl node status`;
        and which IP Calico's autodetection would pick."""

    node.add_command(node_ip)

    @node.command("show")
    @click.option(
        "--classes",
        callback=_parse_classes,
        help="Comma-separated classes to collect: Agent,BGP,Routes (default: all).",
    )
    @bird_socket_options
    @click.option(
        "-o", "--output", type=click.Choice(["json", "yaml", "table"]), default="json", show_default=True
    )
    @click.option("--timestamp", is_flag=True, help="Include lastUpdated (now), as a write would.")
    def show(
        classes: tuple[NodeStatusClass, ...],
        bird_socket: str | None,
        bird6_socket: str | None,
        output: str,
        timestamp: bool,
    ) -> None:
        """Collect once and print the `status` object the agent would write."""
        sockets = BirdSockets.from_overrides(bird_socket, bird6_socket)
        result = asyncio.run(gather(sockets, classes))
        wire = result.status.to_wire()
        if timestamp:
            wire["lastUpdated"] = format_time(datetime.now(UTC))
        else:
            wire.pop("lastUpdated", None)
        if output == "json":
            click.echo(json.dumps(wire, indent=2))
        elif output == "yaml":
            click.echo(dump_yaml(wire), nl=False)
        else:
            click.echo(_show_tables(wire))
        _report_errors(result)
        unreachable = all(
            isinstance(result.errors.get((f, c)), BirdUnavailable) for f in (4, 6) for c in classes
        )
        if result.failed or (classes and unreachable):
            sys.exit(1)

    @node.command("status")
    @bird_socket_options
    @click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
    def status(bird_socket: str | None, bird6_socket: str | None, output: str) -> None:
        """BGP sessions of this node's BIRD, per family, like `calicoctl node status`."""
        sockets = BirdSockets.from_overrides(bird_socket, bird6_socket)
        result = asyncio.run(gather(sockets, (NodeStatusClass.BGP,)))
        families = {family: _family_view(result, family) for family in (4, 6)}
        running = any(view["running"] for view in families.values())
        if output == "json":
            click.echo(
                json.dumps({"birdRunning": running, **{f"ipv{f}": v for f, v in families.items()}}, indent=2)
            )
        else:
            click.echo(_status_text(families, running))
        if not running or result.failed:
            if result.failed:
                _report_errors(result)
            sys.exit(1)


def _family_view(result: CollectionResult, family: int) -> dict[str, Any]:
    error = result.errors.get((family, NodeStatusClass.BGP))
    peers = []
    for details in result.protocols[family]:
        proto = details.protocol
        kind = proto.name.split("_", 1)[0]
        peers.append(
            {
                "peerAddress": peer_ip(details) or "",
                "peerType": _PEER_TYPE_TEXT.get(kind, kind),
                "state": proto.state,
                "since": proto.since,
                "info": proto.info,
            }
        )
    return {
        "running": not isinstance(error, BirdUnavailable),
        "socket": result.sockets[family],
        "error": str(error) if error else None,
        "peers": peers,
    }


def _status_text(families: dict[int, dict[str, Any]], running: bool) -> str:
    if not running:
        return "\nThe BGP backend process (BIRD) is not running.\n"
    out: list[str] = []
    for family, view in families.items():
        label, daemon, process = _FAMILY_NAMES[family]
        out.append("")
        if not view["running"]:
            out.append(f"INFO: {daemon} process: '{process}' is not running.")
            continue
        out.append(f"{label} BGP status")
        if view["error"]:
            out.append(f"Error querying BIRD: {view['error']}")
        elif not view["peers"]:
            out.append(f"No {label} peers found.")
        else:
            rows = [
                [p["peerAddress"], p["peerType"], p["state"], p["since"], p["info"]] for p in view["peers"]
            ]
            out.append(_table(["Peer address", "Peer type", "State", "Since", "Info"], rows))
    out.append("")
    return "\n".join(out)


def _show_tables(wire: dict[str, Any]) -> str:
    out: list[str] = []
    agent = wire.get("agent", {})
    for key in ("birdV4", "birdV6"):
        daemon = agent.get(key, {})
        out += [f"{key}: " + (", ".join(f"{k}={v}" for k, v in daemon.items()) or "(not collected)")]
    bgp = wire.get("bgp", {})
    for family in ("V4", "V6"):
        peers = bgp.get(f"peers{family}", [])
        out += [
            "",
            f"BGP peers IP{family.lower()}: {bgp.get(f'numberEstablished{family}', 0)} established, "
            f"{bgp.get(f'numberNotEstablished{family}', 0)} not established",
        ]
        if peers:
            rows = [
                [p.get("peerIP", ""), p.get("type", ""), p.get("state", ""), p.get("since", "")]
                for p in peers
            ]
            out.append(_table(["Peer IP", "Type", "State", "Since"], rows))
    routes = wire.get("routes", {})
    for family in ("V4", "V6"):
        entries = routes.get(f"routes{family}", [])
        out += ["", f"Routes IP{family.lower()}: {len(entries)}"]
        if entries:
            rows = [
                [
                    r.get("destination", ""),
                    r.get("type", ""),
                    r.get("gateway", ""),
                    r.get("interface", ""),
                    r.get("learnedFrom", {}).get("sourceType", ""),
                    r.get("learnedFrom", {}).get("peerIP", ""),
                ]
                for r in entries
            ]
            out.append(_table(["Destination", "Type", "Gateway", "Interface", "Source", "Peer IP"], rows))
    return "\n".join(out)
