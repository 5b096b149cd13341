"""The mesh as text (a matrix per family, colour optional), as data (JSON/YAML, the shape of
docs/mesh.schema.json) and as Graphviz DOT. Pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from calico_nodestatus.mesh.analysis import Cell, CellStatus, Mesh, NodeView, SessionView

NONE = "-"
DIAGONAL = "·"
# BIRD's state words, short: a cell holds two of them.
_WORDS = {
    "Established": "up",
    "Active": "act",
    "Connect": "conn",
    "Passive": "pasv",
    "Idle": "idle",
    "OpenSent": "osent",
    "OpenConfirm": "oconf",
    "Close": "close",
    "Down": "down",
}
LEGEND = (
    "each cell: ROW's session to COLUMN | COLUMN's session to ROW; up Established, act Active, "
    "conn Connect, pasv Passive (waits to be dialled), idle Idle, - no session, "
    "? no data (agent not live, or its BIRD not answering)"
)
COLOURS: dict[CellStatus, str | None] = {
    CellStatus.UP: "green",
    CellStatus.DOWN: "red",
    CellStatus.ASYMMETRIC: "yellow",
    CellStatus.NONE: None,
    CellStatus.NO_DATA: "bright_black",
}
_DOT_COLOURS = {
    CellStatus.UP: "darkgreen",
    CellStatus.DOWN: "red",
    CellStatus.ASYMMETRIC: "orange",
    CellStatus.NO_DATA: "grey",
}
# Colours a padded cell: (text, colour name or None) -> text; the identity when output is plain.
Colourer = Callable[[str, str | None], str]


def _plain(text: str, _colour: str | None) -> str:
    return text


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else NONE


def side_text(side: tuple[SessionView, ...] | None) -> str:
    if side is None:
        return "?"
    if not side:
        return NONE
    return "+".join(dict.fromkeys(_WORDS.get(s.word, s.word.lower()) for s in side))


def cell_text(cell: Cell) -> str:
    return (
        side_text(cell.forward) if cell.external else f"{side_text(cell.forward)}|{side_text(cell.backward)}"
    )


def _table(rows: list[list[tuple[str, str | None]]], colour: Colourer) -> list[str]:
    widths = [max(len(row[i][0]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(
            colour(text.ljust(width), c) for (text, c), width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def _node_rows(mesh: Mesh) -> list[list[tuple[str, str | None]]]:
    rows: list[list[tuple[str, str | None]]] = [
        [(h, None) for h in ("NODE", "AGENT", "ADDRESSES", "LAST UPDATED", "EXPIRES", "OBJECTS")]
    ]
    for view in mesh.nodes:
        rows.append(
            [
                (view.node, None),
                (str(view.agent), None if view.has_data else "bright_black"),
                (", ".join(view.addresses) or NONE, None),
                (_time(view.last_updated), None),
                (_time(view.expires_at), None),
                (", ".join(view.objects), None),
            ]
        )
    return rows


def _matrix(mesh: Mesh, family: int) -> list[list[tuple[str, str | None]]]:
    cells = {(c.row, c.column): c for c in mesh.cells if c.family == family}
    externals = [p for p in mesh.externals if p.family == family]
    header = [
        (f"IPv{family}", None),
        *((v.node, None) for v in mesh.nodes),
        *((p.label, None) for p in externals),
    ]
    rows = [header]
    for row in mesh.nodes:
        line: list[tuple[str, str | None]] = [(row.node, None)]
        for column in [v.node for v in mesh.nodes] + [p.ip for p in externals]:
            cell = cells.get((row.node, column))
            line.append((DIAGONAL, None) if cell is None else (cell_text(cell), COLOURS[cell.status]))
        rows.append(line)
    return rows


_MARKS = {"fail": "FAIL", "warn": "WARN"}


def render_text(mesh: Mesh, colour: Colourer = _plain) -> str:
    if not mesh.nodes:
        return (
            "no CalicoNodeStatus with the BGP class: nothing to show "
            "(calico-nodestatus apply --all-nodes --classes BGP --ttl 30m fills the mesh)"
        )
    alive = sum(1 for v in mesh.nodes if v.has_data)
    lines = [
        f"BGP mesh: {len(mesh.nodes)} nodes ({alive} with data), {len(mesh.externals)} other peers, "
        f"at {_time(mesh.generated_at)}",
        "",
        *_table(_node_rows(mesh), colour),
    ]
    for family in mesh.families:
        lines += ["", *_table(_matrix(mesh, family), colour)]
    lines += ["", LEGEND, ""]
    if not mesh.verdicts:
        lines.append(f"all {len(mesh.nodes)} nodes healthy: every session Established at both ends (exit 0)")
        return "\n".join(lines)
    lines.append(f"VERDICTS (exit {mesh.exit_code})")
    for verdict in mesh.verdicts:
        mark = colour(f"[{_MARKS[verdict.severity]}]", "red" if verdict.severity == "fail" else "yellow")
        lines.append(f"{mark} {verdict.kind}: {verdict.summary}")
        lines += [f"         - {item}" for item in verdict.evidence]
        lines.append(f"         remedy: {verdict.remedy}")
    return "\n".join(lines)


# --- data ------------------------------------------------------------------------------------------


def _session(s: SessionView) -> dict[str, Any]:
    return {
        "family": s.family,
        "peerIP": s.peer_ip,
        "type": s.peer_type,
        "state": s.state,
        "birdState": s.bird_state,
        "since": s.since,
        "error": s.error,
        "localAS": s.local_as,
        "peerAS": s.peer_as,
        "peerID": s.peer_id,
        "protocol": s.protocol,
    }


def _node(view: NodeView) -> dict[str, Any]:
    return {
        "node": view.node,
        "objects": list(view.objects),
        "agent": str(view.agent),
        "hasData": view.has_data,
        "lastUpdated": _time(view.last_updated) if view.last_updated else None,
        "expiresAt": _time(view.expires_at) if view.expires_at else None,
        "addresses": list(view.addresses),
        "routerID": view.router_id,
        "birdErrors": dict(view.bird_errors),
        "sessions": [_session(s) for s in view.sessions],
    }


def _side_data(side: tuple[SessionView, ...] | None) -> list[dict[str, Any]] | None:
    return (
        None
        if side is None
        else [{"state": s.state, "birdState": s.bird_state, "error": s.error} for s in side]
    )


def to_data(mesh: Mesh) -> dict[str, Any]:
    """The JSON/YAML document (docs/mesh.schema.json)."""
    return {
        "generatedAt": _time(mesh.generated_at),
        "exitCode": mesh.exit_code,
        "families": list(mesh.families),
        "nodes": [_node(v) for v in mesh.nodes],
        "externalPeers": [
            {"ip": p.ip, "family": p.family, "type": p.peer_type, "label": p.label} for p in mesh.externals
        ],
        "cells": [
            {
                "family": c.family,
                "row": c.row,
                "column": c.column,
                "external": c.external,
                "status": str(c.status),
                "text": cell_text(c),
                "forward": _side_data(c.forward),
                "backward": _side_data(c.backward),
            }
            for c in mesh.cells
        ],
        "verdicts": [
            {
                "kind": str(v.kind),
                "severity": v.severity,
                "nodes": list(v.nodes),
                "summary": v.summary,
                "evidence": list(v.evidence),
                "remedy": v.remedy,
            }
            for v in mesh.verdicts
        ],
    }


# --- Graphviz ----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(mesh: Mesh) -> str:
    """An undirected graph: nodes, other peers as boxes, one edge per pair and family."""
    lines = [
        "graph mesh {",
        f"  graph [label={_quote('BGP mesh at ' + _time(mesh.generated_at))}, overlap=false, splines=true];",
        "  node [shape=ellipse, style=filled, fillcolor=white];",
    ]
    for view in mesh.nodes:
        label = "\n".join([view.node, *view.addresses[:2]]) if view.has_data else f"{view.node}\nno data"
        style = "" if view.has_data else ', style="filled,dashed", fillcolor=lightgrey'
        lines.append(f"  {_quote(view.node)} [label={_quote(label)}{style}];")
    for peer in mesh.externals:
        lines.append(f"  {_quote(peer.ip)} [label={_quote(peer.label)}, shape=box];")
    for cell in mesh.cells:
        if not cell.external and cell.row > cell.column:
            continue  # one edge per pair
        if cell.status is CellStatus.NONE:
            continue
        colour = _DOT_COLOURS.get(cell.status, "black")
        style = ", style=dashed" if cell.status is CellStatus.NO_DATA else ""
        label = f"v{cell.family} {cell_text(cell)}"
        lines.append(
            f"  {_quote(cell.row)} -- {_quote(cell.column)} [color={colour}, fontcolor={colour}, "
            f"label={_quote(label)}{style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
