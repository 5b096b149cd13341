"""Parsers for BIRD control-socket replies (BIRD 1.6 and 2.x). Pure: text in, records out.

Every parser takes the raw lines of one reply as BIRD sent them (reply-code prefixes included,
newlines removed). The whole-reply parsers expect the final line (`0000 `, `0013 …`, `0014 …`)
as the last line; error replies (8xxx/9xxx) are turned into typed errors by the client before
parsing, so here they are just unexpected lines.

Tolerant of content, strict about framing (docs/collection-rules.md): only a broken reply-code
sequence (a line that is neither a coded line nor a continuation, a code the reply may not carry,
a line after the final one, no final line) or a record that cannot be read at all (a protocol
table header or a route line of unknown shape) raises `BirdParseError`, and nothing else escapes.
An informational line the parser does not use (a 1xxx code, unknown `show status` text, an
unknown route attribute) is skipped, and a detail value that does not parse loses that one field
of that one protocol.

`show route` is parsed incrementally by `RouteParser.feed()`, chunk by chunk as the reply
streams in. It is the hot path (hundreds of thousands of lines), hence str.split() and index
checks instead of regular expressions, and one tuple per route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from calico_nodestatus.bird.errors import BirdParseError
from calico_nodestatus.bird.types import (
    ChannelInfo,
    DaemonStatus,
    GracefulRestartStatus,
    NextHop,
    Protocol,
    ProtocolDetails,
    Route,
    RouteCount,
    RouteKind,
    RouteStats,
    TableCount,
)

__all__ = [
    "BirdParseError",
    "RouteParser",
    "block_lines",
    "coded_lines",
    "count_route_block",
    "parse_protocols",
    "parse_protocols_all",
    "parse_route_count",
    "parse_routes",
    "parse_status",
    "reply_lines",
]

PROTOCOLS_HEADER = ("name", "proto", "table", "state", "since", "info")


def _is_uint(text: str) -> bool:
    # isdigit() alone accepts characters like "²" that int() rejects.
    return text.isascii() and text.isdecimal()


def _is_informational(code: int | None) -> bool:
    # BIRD's 1xxx codes carry the records of a reply; one a parser does not use is skipped.
    return code is not None and 1000 <= code < 2000


def reply_lines(data: bytes | str) -> list[str]:
    """Split raw reply bytes/text into lines without their `\\n` (a trailing `\\r` is kept)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def block_lines(block: bytes) -> list[str]:
    """The text lines of a block of complete lines (each ending in `\\n`), without newlines."""
    if not block:
        return []
    lines = block.decode("utf-8", "replace").split("\n")
    lines.pop()  # the empty string after the last "\n"
    return lines


def coded_lines(lines: Iterable[str], code: int | None = None) -> Iterator[tuple[int | None, str, bool]]:
    """(code, text, is_final) per line. A continuation line (leading space) carries the code of the
    line before it; `code` is the one in force before the first line (BIRD keeps it per
    connection, so a reply may start with a continuation). A final line must be the last."""
    final_seen: str | None = None
    for line in lines:
        if final_seen is not None:
            raise BirdParseError("line after the final line of the reply", line)
        if line.startswith(" "):
            yield code, line[1:], False
            continue
        if len(line) < 5 or not _is_uint(line[:4]) or line[4] not in "- ":
            raise BirdParseError("line is neither a reply-code line nor a continuation", line)
        code = int(line[:4])
        final = line[4] == " "
        if final:
            final_seen = line
        yield code, line[5:], final


def _split_final(lines: Iterable[str], expected: tuple[int, ...]) -> Iterator[tuple[int | None, str]]:
    """Non-final (code, text) pairs; checks the reply ends with one of the expected final codes.
    The final line's text is yielded last with its code (callers needing it look for it)."""
    ended = False
    for code, text, final in coded_lines(lines):
        if final:
            if code not in expected:
                raise BirdParseError(f"unexpected final reply code {code:04d}", f"{code:04d} {text}")
            ended = True
        yield code, text
    if not ended:
        raise BirdParseError("reply has no final line")


# -- show status ---------------------------------------------------------------------------------

_STATUS_FIELDS = {
    "Router ID is ": "router_id",
    "Hostname is ": "hostname",
    "Current server time is ": "server_time",
    "Last reboot on ": "last_reboot",
    "Last reconfiguration on ": "last_reconfiguration",
}


def parse_status(lines: Iterable[str]) -> DaemonStatus:
    """`show status` (ends with `0013 <message>`); an optional `0024` graceful-restart block.

    Informational lines are read by their text, whichever 1xxx code carries them (BIRD prints
    `1000` for the version and `1011` for the rest, but a lost code line must not turn the lines
    under it into errors); text it does not know is skipped, and the first value of a field wins."""
    fields: dict[str, str] = {}
    version: str | None = None
    message = ""
    gr_message: str | None = None
    gr_waiting: int | None = None
    gr_timer: str | None = None
    for code, text in _split_final(lines, (13,)):
        stripped = text.strip()
        if code == 13:
            message = stripped
        elif code == 24:
            if gr_message is None:
                gr_message = stripped
            elif stripped.startswith("Waiting for "):
                count = stripped.split()[2]
                gr_waiting = int(count) if _is_uint(count) else None
            elif stripped.startswith("Wait timer is "):
                gr_timer = stripped[len("Wait timer is ") :]
        elif _is_informational(code):
            if stripped.startswith("BIRD "):
                if version is None:
                    version = stripped[5:].strip() or None
                continue
            for label, field in _STATUS_FIELDS.items():
                if stripped.startswith(label):
                    fields.setdefault(field, stripped[len(label) :].strip())
                    break
        else:
            raise BirdParseError("unexpected reply code in 'show status' reply", text)
    return DaemonStatus(
        version=version,
        router_id=fields.get("router_id"),
        hostname=fields.get("hostname"),
        server_time=fields.get("server_time"),
        last_reboot=fields.get("last_reboot"),
        last_reconfiguration=fields.get("last_reconfiguration"),
        message=message,
        graceful_restart=(
            GracefulRestartStatus(gr_message, gr_waiting, gr_timer) if gr_message is not None else None
        ),
    )


# -- show protocols [all] ------------------------------------------------------------------------


def _protocol_row(text: str) -> Protocol | None:
    # Columns are padded but long names push the rest right: only whitespace splitting works.
    # BIRD prints at least name, proto, table, state and since; a shorter line is no protocol
    # (a detail line whose `1006` code line was lost, say) and is skipped.
    fields = text.split()
    if len(fields) < 5:
        return None
    return Protocol(
        name=fields[0],
        proto=fields[1],
        table=fields[2],
        state=fields[3],
        since=fields[4],
        info=" ".join(fields[5:]),
    )


def _check_header(text: str) -> None:
    if tuple(text.lower().split()) != PROTOCOLS_HEADER:
        raise BirdParseError("unknown BIRD table output format", text)


def parse_protocols(lines: Iterable[str]) -> list[Protocol]:
    """`show protocols`: header `2002`, rows `1002`, final `0000`."""
    rows: list[Protocol] = []
    for code, text in _split_final(lines, (0,)):
        if code == 2002:
            _check_header(text)
        elif code == 1002:
            if (row := _protocol_row(text)) is not None:
                rows.append(row)
        elif _is_informational(code):
            continue
        elif code != 0 or text.strip():
            raise BirdParseError("unexpected line in 'show protocols' reply", text)
    return rows


class _DetailsBuilder:
    """Accumulates the `1006` detail lines of one protocol."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.values: dict[str, str] = {}
        self.routes: RouteStats | None = None
        self.gr_active = False
        self.channels: list[ChannelInfo] = []
        self.channel: dict[str, str] | None = None
        self.channel_routes: RouteStats | None = None

    def add(self, text: str) -> None:
        stripped = text.strip()
        if not stripped:
            return
        if stripped.startswith("Channel ") and ":" not in stripped:
            self._close_channel()
            self.channel = {"name": stripped[len("Channel ") :]}
            return
        if stripped == "Neighbor graceful restart active":
            self.gr_active = True
            return
        label, sep, value = stripped.partition(":")
        if not sep:
            return  # capability tree lines and other free text we do not use
        value = value.strip()
        if self.channel is not None and label in ("State", "Table", "Routes"):
            if label != "Routes":
                self.channel.setdefault(label, value)
            elif self.channel_routes is None:
                self.channel_routes = _route_stats(value)
        elif label == "Routes":
            if self.routes is None:
                self.routes = _route_stats(value)
        else:
            self.values.setdefault(label, value)

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channels.append(
                ChannelInfo(
                    name=self.channel["name"],
                    state=self.channel.get("State"),
                    table=self.channel.get("Table"),
                    routes=self.channel_routes,
                )
            )
        self.channel = None
        self.channel_routes = None

    def build(self) -> ProtocolDetails:
        self._close_channel()
        routes = self.routes
        channel_stats = [c.routes for c in self.channels if c.routes is not None]
        if routes is None and channel_stats:
            routes = RouteStats(
                imported=sum(s.imported for s in channel_stats),
                exported=sum(s.exported for s in channel_stats),
                preferred=sum(s.preferred for s in channel_stats),
                filtered=(
                    sum(s.filtered or 0 for s in channel_stats)
                    if any(s.filtered is not None for s in channel_stats)
                    else None
                ),
            )
        v = self.values
        return ProtocolDetails(
            protocol=self.protocol,
            description=v.get("Description"),
            bgp_state=v.get("BGP state"),
            neighbor_address=_address(v.get("Neighbor address")),
            neighbor_as=_number(v.get("Neighbor AS")),
            local_as=_number(v.get("Local AS")),
            neighbor_id=v.get("Neighbor ID"),
            last_error=v.get("Last error"),
            graceful_restart_active=self.gr_active,
            routes=routes,
            channels=tuple(self.channels),
        )


# Detail values that do not parse are lost for that protocol alone (None), never the reply.


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and _is_uint(value) else None


def _address(value: str | None) -> str | None:
    """`Neighbor address:` when it is an IP address (an IPv6 link-local one may carry `%iface`)."""
    if value is None:
        return None
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    return value


def _route_stats(value: str) -> RouteStats | None:
    # "3 imported, 1 exported, 3 preferred" / "0 imported, 0 filtered, 0 exported, 0 preferred"
    counts: dict[str, int] = {}
    for part in value.split(","):
        words = part.split()
        if len(words) != 2 or not _is_uint(words[0]):
            return None
        counts[words[1]] = int(words[0])
    if not {"imported", "exported", "preferred"} <= counts.keys():
        return None
    return RouteStats(
        imported=counts["imported"],
        exported=counts["exported"],
        preferred=counts["preferred"],
        filtered=counts.get("filtered"),
    )


def parse_protocols_all(lines: Iterable[str]) -> list[ProtocolDetails]:
    """`show protocols all` (every protocol in one reply) or `show protocols all <name>`."""
    result: list[ProtocolDetails] = []
    current: _DetailsBuilder | None = None
    for code, text in _split_final(lines, (0,)):
        if code == 2002:
            _check_header(text)
        elif code == 1002:
            if current is not None:
                result.append(current.build())
            row = _protocol_row(text)
            current = _DetailsBuilder(row) if row is not None else None
        elif code == 1006:
            if current is not None:  # details under no readable protocol row are skipped
                current.add(text)
        elif _is_informational(code):
            continue
        elif code != 0 or text.strip():
            raise BirdParseError("unexpected line in 'show protocols all' reply", text)
    if current is not None:
        result.append(current.build())
    return result


# -- show route ----------------------------------------------------------------------------------

_VIA = RouteKind.VIA
_DEV = RouteKind.DEV
_SIMPLE_KINDS = {
    "blackhole": RouteKind.BLACKHOLE,
    "unreachable": RouteKind.UNREACHABLE,
    "prohibited": RouteKind.PROHIBITED,
}
# Route line shapes whose next hops follow on their own tab-indented lines.
_HOPS_FOLLOW = frozenset(("unicast", "multipath"))
_ROUTE_CODE = "1007"  # route lines; every other 1xxx block (`show route all`'s `1008` and `1012`
# attributes, or one we do not know) is skipped
_tuple_new = tuple.__new__


class RouteParser:
    """Incremental `show route` parser: `feed()` each chunk of reply lines (the final line
    excluded) as it arrives and get the routes completed so far; `finish()` at the end.

    Handles BIRD 1.6 (`<prefix> via <gw> on <if> [<proto> <time>] * (...)`) and 2.x
    (`Table master4:` headers, `<prefix> unicast [<proto> <time>] * (...)` with the next hop on
    the following ` \\tvia <gw> on <if>` line), blank-prefix lines for further routes of the same
    prefix, ECMP next-hop lines, dev/blackhole/unreachable/prohibited, and `show route all`
    (attribute blocks are skipped)."""

    __slots__ = ("_code", "_hops", "_hops_counted", "_pending", "_prefix", "_table")

    def __init__(self) -> None:
        self._prefix: str | None = None  # destination of the last route line (blank-prefix lines)
        self._table: str | None = None
        self._code = _ROUTE_CODE  # code in force for continuation lines
        # A route whose next-hop lines may still follow: (prefix, (protocol, primary, sync_error,
        # table, ())), and those lines so far, verbatim (interpreted when the route completes).
        self._pending: _Pending | None = None
        self._hops: list[str] = []
        self._hops_counted = False  # next-hop lines to come belong to a route counted, not fed

    def feed(self, lines: Iterable[str]) -> list[Route]:
        out: list[Route] = []
        append = out.append
        prefix = self._prefix
        table = self._table
        pending = self._pending
        hops = self._hops
        skipping = self._code != _ROUTE_CODE
        batch = lines if isinstance(lines, list) else list(lines)
        count = len(batch)
        index = 0
        line = ""
        try:
            while index < count:
                line = batch[index]
                index += 1
                if line[0] == " ":
                    if skipping:
                        continue
                    if line[1:2] == "\t":  # a next hop of the route above (BIRD 2, 1.6 multipath)
                        if pending is not None:
                            hops.append(line)
                        continue  # else an attribute of a route that takes no next hop: skipped
                else:
                    code = line[:4]
                    if line[4] != "-" or not _is_uint(code):
                        raise BirdParseError("unexpected line in 'show route' reply", line)
                    self._code = code
                    skipping = code != _ROUTE_CODE
                    if skipping:
                        if code[0] != "1":
                            raise BirdParseError(f"unexpected reply code {code} in 'show route'", line)
                        continue
                    line = " " + line[5:]
                if pending is not None:
                    # Inlined fast path for the one `via <gw> on <if>` hop of nearly every BIRD 2
                    # route: half of BIRD 2's parse time went to the general path's calls.
                    h = hops[0].split() if len(hops) == 1 else None
                    if h is not None and len(h) == 4 and h[0] == "via" and h[2] == "on":
                        append(_tuple_new(Route, (pending[0], _VIA, h[1], h[3], *pending[1])))
                    else:
                        append(_complete(pending, hops))
                    pending = None
                    hops = []
                p = line.split()
                if not p:
                    continue  # BIRD 2's blank separator line between tables
                if line[1] == " ":  # blank prefix column: another route for the same prefix
                    if prefix is None:
                        raise BirdParseError("route line without a destination", line)
                    i = 0
                else:
                    first = p[0]
                    if first == "Table":
                        if len(p) != 2 or p[1][-1] != ":":
                            raise BirdParseError("malformed table header", line)
                        table = p[1][:-1]
                        prefix = None
                        continue
                    prefix = first
                    i = 1
                kind = p[i]
                if kind in _HOPS_FOLLOW:
                    b = i + 1
                    route_kind = None
                elif kind == "via":
                    if p[i + 2] != "on":
                        raise BirdParseError("'via' route without 'on <interface>'", line)
                    gateway = p[i + 1]
                    iface = p[i + 3]
                    b = i + 4
                    route_kind = _VIA
                elif kind == "dev":
                    gateway = None
                    iface = p[i + 1]
                    b = i + 2
                    route_kind = _DEV
                else:
                    b = i + 1
                    gateway = iface = None
                    route_kind = _SIMPLE_KINDS.get(kind)
                    if route_kind is None:
                        raise BirdParseError(f"unknown route destination {kind!r}", line)
                proto = p[b]
                if proto[0] != "[" or len(proto) < 2:
                    raise BirdParseError("route line without '[protocol time]'", line)
                # The bracket normally closes after the time; `from <ip>` or a two-word time
                # format push it further right.
                e = b + 1
                while p[e][-1] != "]":
                    e += 1
                mark = p[e + 1] if len(p) > e + 1 else ""
                sync_error = mark == "!"
                primary = sync_error or mark == "*"
                if route_kind is None:
                    # BIRD 2's usual shape: exactly one ` \tvia <gw> on <if>` line, then a line that
                    # is no next hop (told by its second character alone; a line with a tab there
                    # that is none only takes the pending path), so the route is complete now:
                    # both lines in one step instead of holding the route pending.
                    if index + 1 < count:
                        hop = batch[index]
                        if hop[1:2] == "\t" and hop[0] == " " and batch[index + 1][1:2] != "\t":
                            h = hop.split()
                            if len(h) == 4 and h[0] == "via" and h[2] == "on":
                                append(
                                    _tuple_new(
                                        Route,
                                        (prefix, _VIA, h[1], h[3], proto[1:], primary, sync_error, table, ()),
                                    )
                                )
                                index += 1
                                continue
                    pending = (prefix, (proto[1:], primary, sync_error, table, ()))
                    continue
                fields = (prefix, route_kind, gateway, iface, proto[1:], primary, sync_error, table, ())
                append(_tuple_new(Route, fields))
        except IndexError:
            raise BirdParseError("truncated route line", line) from None
        finally:
            self._prefix = prefix
            self._table = table
            self._pending = pending
            self._hops = hops
        return out

    @property
    def table(self) -> str | None:
        """The BIRD 2 table the next route line belongs to (None before any header, and on 1.6)."""
        return self._table

    @property
    def in_routes(self) -> bool:
        """The lines to come are route lines (not a `show route all` attribute block)."""
        return self._code == _ROUTE_CODE

    @property
    def hops_counted(self) -> bool:
        """Next-hop lines to come belong to a route that was counted, not fed (`skipped`)."""
        return self._hops_counted

    def complete_from(self, block: bytes) -> tuple[list[Route], bytes]:
        """For a caller that may count `block` instead of feeding it (`count_route_block`): the
        next-hop lines that open it are consumed here (the waiting route completed with them, or
        dropped when they belong to a route counted with the block before), and the rest is
        returned. A block of next-hop lines only is consumed whole: more may follow."""
        if self._pending is None and not self._hops_counted:
            return [], block
        end = 0
        while block[end : end + 2] == b" \t":
            end = block.index(b"\n", end) + 1
        if self._hops_counted:
            self._hops_counted = end == len(block)
            return [], block[end:]
        routes = self.feed(block_lines(block[:end]))
        if end == len(block):
            return routes, b""
        pending, self._pending = self._pending, None
        hops, self._hops = self._hops, []
        if pending is not None:
            routes.append(_complete(pending, hops))
        return routes, block[end:]

    def skipped(self, block: bytes) -> None:
        """`block` (route and next-hop lines of the current table, see `count_route_block`) was
        counted instead of fed: next-hop lines after it belong to a counted route, and a
        blank-prefix line after it to its last destination."""
        self._hops_counted = True
        end = len(block) - 1
        while end > 0:
            start = block.rfind(b"\n", 0, end) + 1
            if block[start : start + 1] == b" " and block[start + 1 : start + 2] not in b" \t":
                self._prefix = block[start + 1 : end].split(None, 1)[0].decode("utf-8", "replace")
                return
            end = start - 1

    def finish(self, final_line: str = "0000 ") -> list[Route]:
        """Routes still waiting for next-hop lines, once the reply has ended with `final_line`."""
        if not final_line.startswith("0000"):
            raise BirdParseError("unexpected final line of 'show route'", final_line)
        pending, self._pending = self._pending, None
        hops, self._hops = self._hops, []
        return [] if pending is None else [_complete(pending, hops)]


class BlockCount(NamedTuple):
    """The routes of a block of `show route` lines, all from one protocol, by BIRD's mark."""

    protocol: str
    primary: int  # `*`
    sync_error: int  # `!` (primary too, but not installed)
    other: int  # no mark


def count_route_block(block: bytes) -> BlockCount | None:
    """Counts the routes in `block` (complete continuation lines of a `show route` reply, the
    final line excluded) on its bytes, in C, without splitting it into lines, when every line is
    a route line of one protocol or a next-hop line (` \\t…`). None when the block holds
    anything else (a table header or separator, attribute lines, another protocol, a line that
    is no route): then it has to be parsed. A handful of `count()` passes over the bytes, against
    about 1 µs a route for the full parse."""
    if block[:1] != b" ":
        return None  # empty, or a reply code: the reply's first line
    # A route line is `<prefix> <kind…> [<protocol> <time…>] <mark> (<preference>) …`; next-hop
    # lines carry no `[`, so the first ` [` opens the first route's protocol.
    start = block.find(b" [") + 2
    end = block.find(b" ", start)
    if start < 2 or end < 0:
        return None
    protocol = block[start:end]
    routes = block.count(b" [" + protocol + b" ")
    # The tab starts a next-hop line and appears nowhere else: every line is either kind, or
    # the block holds some other line and is not counted here.
    if b"\n" in protocol or b"-\t" in block or routes + block.count(b"\t") != block.count(b"\n"):
        return None  # `-\t`: an attribute block's code line (`show route all`)
    primary = block.count(b"] * (")
    sync_error = block.count(b"] ! (")
    other = routes - primary - sync_error
    if other < 0:
        return None
    return BlockCount(protocol.decode("utf-8", "replace"), primary, sync_error, other)


# A route waiting for its next hops: its prefix, and its fields from `protocol` on.
_Pending = tuple[str, tuple[str, bool, bool, str | None, tuple[()]]]


def _complete(pending: _Pending, hop_lines: list[str]) -> Route:
    """The route of a `unicast`/`multipath` line, from its next-hop lines (tab-indented lines that
    are no next hop are attributes we do not know, skipped)."""
    prefix, (proto, primary, sync_error, table, _) = pending
    next_hops = [hop for line in hop_lines if (hop := _next_hop(line.split())) is not None]
    if not next_hops:
        raise BirdParseError("route has no next hop", prefix)
    first = next_hops[0]
    return _tuple_new(
        Route,
        (
            prefix,
            _VIA if first.gateway is not None else _DEV,
            first.gateway,
            first.interface,
            proto,
            primary,
            sync_error,
            table,
            tuple(next_hops) if len(next_hops) > 1 else (),
        ),
    )


def _next_hop(p: list[str]) -> NextHop | None:
    # "via 198.18.0.2 on eth0 [weight 1]" / "dev eth0"; None: not a next hop. A weight that does
    # not parse is lost, not the route.
    n = len(p)
    if n >= 2 and p[0] == "via":
        iface = p[3] if n >= 4 and p[2] == "on" else None
        gateway: str | None = p[1]
    elif n >= 2 and p[0] == "dev":
        gateway, iface = None, p[1]
    else:
        return None
    weight: int | None = None
    if "weight" in p:
        w = p.index("weight") + 1
        weight = int(p[w]) if w < n and _is_uint(p[w]) else None
    return NextHop(gateway, iface, weight)


def parse_routes(lines: Iterable[str]) -> list[Route]:
    """A whole `show route` reply, final `0000 ` line included."""
    body = list(lines)
    if not body:
        raise BirdParseError("reply has no final line")
    final = body.pop()
    if final[:1] == " " or not _is_uint(final[:4]) or final[4:5] != " ":
        raise BirdParseError("reply has no final line", final)
    parser = RouteParser()
    routes = parser.feed(body)
    routes.extend(parser.finish(final))
    return routes


# -- show route count ----------------------------------------------------------------------------


def _table_count(text: str) -> TableCount:
    # "15 of 15 routes for 13 networks[ in table master4]"
    # "Total: 30 of 30 routes for 26 networks in 2 tables"
    words = text.split()
    if words[:1] == ["Total:"]:
        words = words[1:]
    if (
        len(words) < 6
        or words[1] != "of"
        or words[3] != "routes"
        or words[4] != "for"
        or not (_is_uint(words[0]) and _is_uint(words[2]) and _is_uint(words[5]))
    ):
        raise BirdParseError("malformed route count", text)
    table = words[9] if len(words) == 10 and words[6:9] == ["networks", "in", "table"] else None
    return TableCount(table=table, routes=int(words[0]), total_routes=int(words[2]), networks=int(words[5]))


def parse_route_count(lines: Iterable[str]) -> RouteCount:
    """`show route count`: 1.6 `0014 N of M routes for K networks`; 2.x per-table `1007` lines then
    `0014 Total: …` (or `0000 ` when a single table was asked for)."""
    tables: list[TableCount] = []
    total: TableCount | None = None
    for code, text in _split_final(lines, (0, 14)):
        if code == 1007:
            tables.append(_table_count(text))
        elif code == 14:
            total = _table_count(text)
        elif code != 0 or text.strip():
            raise BirdParseError("unexpected line in 'show route count' reply", text)
    return RouteCount(tables=tuple(tables), total=total)
