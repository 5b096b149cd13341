"""Renders parsed BIRD records back into BIRD's exact reply text, for the round-trip oracle.

The shapes are those of the real transcripts in tests/fixtures/bird: BIRD 1.6 (`"1.6"`) and
BIRD 2 (`"2"`) column widths, reply codes (a code line, then continuation lines starting with a
space), BIRD 2's `Table …:` headers and tab-indented next hops, BIRD 1.6's `multipath` lines. A
renderer knows nothing of the parser: it writes what BIRD writes, so `parse(render(x)) == x` holds
only if the parser reads BIRD's format right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from calico_nodestatus.bird.types import (
    DaemonStatus,
    NextHop,
    Protocol,
    ProtocolDetails,
    Route,
    RouteKind,
    RouteStats,
)

HEADERS = {
    "1.6": "name     proto    table    state  since       info",
    "2": "Name       Proto      Table      State  Since         Info",
}


def reply(blocks: Iterable[tuple[int, Sequence[str]]], final: str) -> str:
    """A whole reply: BIRD prints a code line whenever the code changes, else a continuation."""
    out: list[str] = []
    code_in_force: int | None = None
    for code, lines in blocks:
        for line in lines:
            out.append(f" {line}" if code == code_in_force else f"{code:04d}-{line}")
            code_in_force = code
    return "\n".join([*out, final]) + "\n"


# -- show status ---------------------------------------------------------------------------------


def status(record: DaemonStatus, version: str) -> str:
    info = [f"Router ID is {record.router_id}"]
    if record.hostname is not None:
        info.append(f"Hostname is {record.hostname}")
    info += [
        f"Current server time is {record.server_time}",
        f"Last reboot on {record.last_reboot}",
        f"Last reconfiguration on {record.last_reconfiguration}",
    ]
    blocks: list[tuple[int, Sequence[str]]] = [(1000, [f"BIRD {record.version}"]), (1011, info)]
    gr = record.graceful_restart
    if gr is not None:
        unit = "protocols" if version == "1.6" else "channels"
        lines = [gr.message]
        if gr.waiting_for is not None:
            lines.append(f"  Waiting for {gr.waiting_for} {unit} to recover")
        if gr.wait_timer is not None:
            lines.append(f"  Wait timer is {gr.wait_timer}")
        blocks.append((24, lines))
    return reply(blocks, f"0013 {record.message}")


# -- show protocols [all] ------------------------------------------------------------------------


def protocol_row(row: Protocol, version: str) -> str:
    if version == "1.6":
        return f"{row.name:<8} {row.proto:<8} {row.table:<8} {row.state:<6} {row.since:<10}  {row.info}   "
    return f"{row.name:<10} {row.proto:<10} {row.table:<10} {row.state:<6} {row.since:<12}  {row.info}   "


def protocols(rows: Sequence[Protocol], version: str) -> str:
    return reply([(2002, [HEADERS[version]]), (1002, [protocol_row(r, version) for r in rows])], "0000 ")


def _route_stats(stats: RouteStats) -> str:
    filtered = f"{stats.filtered} filtered, " if stats.filtered is not None else ""
    return f"{stats.imported} imported, {filtered}{stats.exported} exported, {stats.preferred} preferred"


_CHANGE_STATS = [
    "Route change stats:     received   rejected   filtered    ignored   accepted",
    "  Import updates:              3          0          0          0          3",
    "  Import withdraws:            0          0        ---          0          0",
]


def _details_lines(details: ProtocolDetails, version: str) -> list[str]:
    lines = []
    if details.description is not None:
        lines.append(f"  Description:    {details.description}")
    if version == "1.6":
        lines += ["  Preference:     100", "  Input filter:   ACCEPT", "  Output filter:  REJECT"]
        if details.routes is not None:
            lines.append(f"  Routes:         {_route_stats(details.routes)}")
        lines += [f"  {line}" for line in _CHANGE_STATS]
    if details.bgp_state is not None:
        lines.append(f"  BGP state:          {details.bgp_state}")
        for label, value in (
            ("Neighbor address", details.neighbor_address),
            ("Neighbor AS", details.neighbor_as),
            ("Local AS", details.local_as),
            ("Neighbor ID", details.neighbor_id),
        ):
            if value is not None:
                lines.append(f"    {label + ':':<18}{value}")
        if details.graceful_restart_active:
            lines += ["    Neighbor graceful restart active", "    Restart timer:    119/-"]
        lines += ["    Local capabilities", "      Multiprotocol", "        AF announced: ipv4"]
        if details.last_error is not None:
            lines.append(f"    Last error:       {details.last_error}")
    for channel in details.channels:
        lines.append(f"  Channel {channel.name}")
        if channel.state is not None:
            lines.append(f"    State:          {channel.state}")
        if channel.table is not None:
            lines.append(f"    Table:          {channel.table}")
        lines += ["    Preference:     100", "    Input filter:   ACCEPT"]
        if channel.routes is not None:
            lines.append(f"    Routes:         {_route_stats(channel.routes)}")
        lines += [f"    {line}" for line in _CHANGE_STATS]
    return [*lines, ""]  # BIRD ends each protocol's details with an empty continuation line


def protocols_all(details: Sequence[ProtocolDetails], version: str) -> str:
    blocks: list[tuple[int, Sequence[str]]] = [(2002, [HEADERS[version]])]
    for item in details:
        blocks += [(1002, [protocol_row(item.protocol, version)]), (1006, _details_lines(item, version))]
    return reply(blocks, "0000 ")


# -- show route ----------------------------------------------------------------------------------


def _hop(hop: NextHop, ecmp: bool) -> str:
    text = f"\tvia {hop.gateway} on {hop.interface}" if hop.gateway is not None else f"\tdev {hop.interface}"
    return f"{text} weight {hop.weight}" if ecmp and hop.weight is not None else text


def _route_lines(route: Route, show_prefix: bool, version: str, time: str) -> list[str]:
    width = 18 if version == "1.6" else 20
    prefix = route.prefix if show_prefix else ""
    mark = (" !" if route.sync_error else " *") if route.primary else ""
    tail = f"[{route.protocol} {time}]{mark} (100)"
    hops = route.next_hops or ((NextHop(route.gateway, route.interface, None),) if route.interface else ())
    kind = route.kind
    if kind in (RouteKind.BLACKHOLE, RouteKind.UNREACHABLE, RouteKind.PROHIBITED):
        return [f"{prefix:<{width}} {kind.value} {tail}"]
    if version == "2":
        return [f"{prefix:<{width}} unicast {tail}", *(_hop(h, len(hops) > 1) for h in hops)]
    if route.next_hops:
        return [f"{prefix:<{width}} multipath {tail}", *(_hop(h, True) for h in hops)]
    if kind is RouteKind.VIA:
        return [f"{prefix:<{width}} via {route.gateway} on {route.interface} {tail}"]
    return [f"{prefix:<{width}} dev {route.interface} {tail}"]


def routes(table: Sequence[Route], version: str, time: str = "00:16:20") -> str:
    """`show route`: BIRD prints a prefix once, its further routes with a blank prefix column;
    BIRD 2 groups routes by table, each under `Table <name>:`, tables separated by a blank line."""
    lines: list[str] = []
    table_name: str | None = None
    previous: str | None = None
    for route in table:
        if version == "2" and route.table != table_name:
            lines += [*([""] if table_name is not None else []), f"Table {route.table}:"]
            table_name, previous = route.table, None
        lines += _route_lines(route, route.prefix != previous, version, time)
        previous = route.prefix
    return reply([(1007, lines)] if lines else [], "0000 ")
