"""Both ends of every BGP session, from the datastore alone (pure: objects, live nodes, now in).

Each node with a CalicoNodeStatus of the BGP class reports its sessions (the status) and BIRD's
view of them (the bgp-sessions annotation: its own addresses, BIRD's state word, AS numbers, the
last error). A peer IP is resolved to the node that reports it as its address (or its router ID);
peers that are no node of the matrix (global peers, route reflectors) are columns of their own.

A cell is one node pair in one family: what the row node's sessions toward the column node say,
and what the column node's sessions toward the row node say. A node whose agent's liveness expired
(or that never reported) gives "no data", never "down".

Verdicts, one per problem, worst first, each naming the nodes and quoting both ends:
- node isolated: every session of the node is down, seen from every side that has data;
- pair broken: only that pair is down, both nodes have other sessions up;
- one-sided: a down pair where one end dials (Active/Connect) and the other waits (Passive/Idle);
- asymmetric configuration: one node lists the other as a peer (of a type) and the other does not;
- AS mismatch: BIRD's error says ``Bad peer AS`` at either end;
- duplicate router IDs: two nodes answer with, or report, the same router ID;
- stale agent: the node's agent stopped renewing its liveness (or never reported).
A pair explained by a more specific verdict (AS mismatch, duplicate router ID, isolated node) is not
reported again as broken.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from calico_nodestatus.api import BGPDaemonState, CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.api.annotations import (
    BGP_SESSIONS_ANNOTATION,
    EXPIRES_AT_ANNOTATION,
    BGPSessionsReport,
    SessionDetail,
    parse_expiry,
)

FAMILIES = (4, 6)
ESTABLISHED = "Established"
_DIALING = frozenset({"Active", "Connect", "OpenSent", "OpenConfirm"})
_WAITING = frozenset({"Passive", "Idle"})
_AS_MISMATCH = re.compile(r"bad peer as", re.IGNORECASE)
_BAD_IDENTIFIER = re.compile(r"bad bgp identifier", re.IGNORECASE)


def normal_ip(text: str) -> str:
    """One spelling per address (``2001:db8:0::1`` and ``2001:db8::1`` are the same peer)."""
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return text


class AgentState(enum.StrEnum):
    ALIVE = "alive"
    STALE = "stale"  # reported once, liveness expired since
    NONE = "none"  # never reported


@dataclass(frozen=True, slots=True)
class SessionView:
    """One BGP session as one node reports it."""

    node: str
    family: int
    peer_ip: str
    peer_type: str | None  # NodeMesh, NodePeer, GlobalPeer
    state: str | None  # Calico's session state
    since: str | None = None
    bird_state: str | None = None  # BIRD's word, which tells Passive from Active
    error: str | None = None
    local_as: int | None = None
    peer_as: int | None = None
    peer_id: str | None = None
    protocol: str | None = None

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED

    @property
    def word(self) -> str:
        return self.bird_state or self.state or "unknown"

    @property
    def dialing(self) -> bool:
        return not self.established and self.word in _DIALING

    @property
    def waiting(self) -> bool:
        return not self.established and self.word in _WAITING

    def describe(self) -> str:
        """``Active (Socket: Connection refused)``."""
        return f"{self.word} ({self.error})" if self.error and not self.established else self.word


@dataclass(frozen=True, slots=True)
class NodeView:
    node: str
    objects: tuple[str, ...]  # its CalicoNodeStatus objects with the BGP class
    agent: AgentState
    last_updated: datetime | None
    expires_at: datetime | None
    addresses: tuple[str, ...]  # reported addresses, then the router ID
    router_id: str | None
    bird_errors: Mapping[str, str]
    sessions: tuple[SessionView, ...]

    @property
    def has_data(self) -> bool:
        return self.agent is AgentState.ALIVE and self.last_updated is not None


@dataclass(frozen=True, slots=True)
class ExternalPeer:
    """A peer IP no node of the matrix owns: a global peer, a route reflector, a node without status."""

    ip: str
    family: int
    peer_type: str | None

    @property
    def label(self) -> str:
        kind = {"GlobalPeer": "global", "NodePeer": "peer", "NodeMesh": "mesh"}.get(
            self.peer_type or "", "peer"
        )
        return f"{kind} {self.ip}"


class CellStatus(enum.StrEnum):
    UP = "up"  # every end with data has the session Established
    DOWN = "down"  # an end with data has the session, not Established
    ASYMMETRIC = "asymmetric"  # one end has a session toward the other, the other has none
    NONE = "none"  # no session either way
    NO_DATA = "no data"  # no end has data


@dataclass(frozen=True, slots=True)
class Cell:
    family: int
    row: str  # a node
    column: str  # a node, or an external peer's IP
    forward: tuple[SessionView, ...] | None  # row's sessions toward column; None: row has no data
    backward: tuple[SessionView, ...] | None  # column's toward row; None: no data, or external
    external: bool = False

    @property
    def status(self) -> CellStatus:
        sides = [side for side in (self.forward, self.backward) if side is not None]
        if not sides:
            return CellStatus.NO_DATA
        listed = [side for side in sides if side]
        if not listed:
            return CellStatus.NONE
        if any(not any(s.established for s in side) for side in listed):
            return CellStatus.DOWN
        if len(listed) < len(sides):
            return CellStatus.ASYMMETRIC
        return CellStatus.UP


class VerdictKind(enum.StrEnum):
    """In report order, worst first."""

    NODE_ISOLATED = "node isolated"
    PAIR_BROKEN = "pair broken"
    ONE_SIDED = "one-sided"
    ASYMMETRIC = "asymmetric configuration"
    AS_MISMATCH = "AS mismatch"
    DUPLICATE_ROUTER_ID = "duplicate router IDs"
    STALE_AGENT = "stale agent"


_WARNINGS = frozenset({VerdictKind.ASYMMETRIC, VerdictKind.STALE_AGENT})
_ORDER = {kind: index for index, kind in enumerate(VerdictKind)}


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    nodes: tuple[str, ...]
    summary: str
    evidence: tuple[str, ...]
    remedy: str

    @property
    def severity(self) -> str:
        return "warn" if self.kind in _WARNINGS else "fail"


@dataclass(frozen=True, slots=True)
class Mesh:
    generated_at: datetime
    nodes: tuple[NodeView, ...]
    externals: tuple[ExternalPeer, ...]
    families: tuple[int, ...]
    cells: tuple[Cell, ...]
    verdicts: tuple[Verdict, ...]

    @property
    def exit_code(self) -> int:
        """Like the doctor's: 0 all healthy, 1 any failure, 2 only warnings (or nothing to show)."""
        if any(v.severity == "fail" for v in self.verdicts):
            return 1
        return 2 if self.verdicts or not self.nodes else 0


# --- building the views ------------------------------------------------------------------------------


def _sessions(node: str, obj: CalicoNodeStatus, report: BGPSessionsReport | None) -> tuple[SessionView, ...]:
    views = []
    for family, peers in ((4, obj.status.bgp.peers_v4), (6, obj.status.bgp.peers_v6)):
        for peer in peers:
            if not peer.peer_ip:
                continue
            ip = normal_ip(peer.peer_ip)
            detail = _detail_for(report, ip, peer.type)
            views.append(
                SessionView(
                    node=node,
                    family=family,
                    peer_ip=ip,
                    peer_type=str(peer.type) if peer.type else None,
                    state=str(peer.state) if peer.state else None,
                    since=peer.since,
                    bird_state=detail.bird_state if detail else None,
                    error=detail.error if detail else None,
                    local_as=detail.local_as if detail else None,
                    peer_as=detail.peer_as if detail else None,
                    peer_id=detail.peer_id if detail else None,
                    protocol=detail.protocol if detail else None,
                )
            )
    return tuple(views)


_PROTOCOL_PREFIX = {"NodeMesh": "Mesh_", "NodePeer": "Node_", "GlobalPeer": "Global_"}


def _detail_for(report: BGPSessionsReport | None, ip: str, peer_type: object) -> SessionDetail | None:
    """BIRD's detail of the session to ``ip`` of that type (a node may peer twice with one IP)."""
    if report is None:
        return None
    candidates = [d for d in report.sessions if normal_ip(d.peer_ip) == ip]
    prefix = _PROTOCOL_PREFIX.get(str(peer_type or ""))
    if prefix is not None:  # never another type's detail (the annotation may lag the status)
        candidates = [d for d in candidates if d.protocol.startswith(prefix)]
    return candidates[0] if candidates else None


def _pick(objects: Sequence[CalicoNodeStatus]) -> CalicoNodeStatus:
    """The node's most recently updated object (ties: by name)."""
    return max(objects, key=lambda o: (o.status.last_updated is not None, o.status.last_updated or 0, o.name))


def node_views(objects: Iterable[CalicoNodeStatus], live_nodes: frozenset[str]) -> list[NodeView]:
    by_node: dict[str, list[CalicoNodeStatus]] = defaultdict(list)
    for obj in objects:
        if NodeStatusClass.BGP in obj.spec.classes:
            by_node[obj.spec.node].append(obj)
    views = []
    for node in sorted(by_node):
        chosen = _pick(by_node[node])
        report = BGPSessionsReport.decode(chosen.metadata.annotations.get(BGP_SESSIONS_ANNOTATION))
        agent = (
            AgentState.ALIVE
            if node in live_nodes
            else AgentState.STALE
            if any(o.status.last_updated for o in by_node[node])
            else AgentState.NONE
        )
        router_ids = [
            chosen.status.agent.bird_v4.router_id,
            chosen.status.agent.bird_v6.router_id,
            report.router_id if report else None,
        ]
        router_id = next((rid for rid in router_ids if rid), None)
        addresses = [normal_ip(a) for a in (report.addresses if report else [])]
        if router_id:
            addresses.append(normal_ip(router_id))
        # A daemon the agent reports NotReady did not answer: the sessions the status still holds
        # for its family are its last good data, not what BIRD says now.
        daemons = {"v4": chosen.status.agent.bird_v4, "v6": chosen.status.agent.bird_v6}
        not_ready = {f for f, d in daemons.items() if d.state == BGPDaemonState.NOT_READY}
        bird_errors = dict(report.bird_errors) if report else {}
        # A family BIRD gave no data for in the latest report: the status keeps its last good peers.
        answered = {("v6" if ":" in d.peer_ip else "v4") for d in report.sessions} if report else set()
        not_ready |= set(bird_errors) - answered
        for family in not_ready:
            bird_errors.setdefault(family, "BIRD not ready")
        expiries = [
            e for o in by_node[node] if (e := parse_expiry(o.metadata.annotations.get(EXPIRES_AT_ANNOTATION)))
        ]
        views.append(
            NodeView(
                node=node,
                objects=tuple(sorted(o.name for o in by_node[node])),
                agent=agent,
                last_updated=chosen.status.last_updated,
                expires_at=min(expiries) if expiries else None,
                addresses=tuple(dict.fromkeys(addresses)),
                router_id=router_id,
                bird_errors=bird_errors,
                sessions=tuple(s for s in _sessions(node, chosen, report) if f"v{s.family}" not in not_ready),
            )
        )
    return views


def _owners(nodes: Sequence[NodeView]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for view in nodes:
        for address in view.addresses:
            owners.setdefault(address, view.node)
    return owners


def _toward(
    view: NodeView, target: NodeView | str, family: int, owners: Mapping[str, str]
) -> tuple[SessionView, ...] | None:
    """``view``'s sessions toward ``target``; None when ``view`` has no data for that family (its
    agent is not live, or its BIRD for the family did not answer)."""
    bird_down = f"v{family}" in view.bird_errors and not any(s.family == family for s in view.sessions)
    if not view.has_data or bird_down:
        return None
    if isinstance(target, str):
        return tuple(s for s in view.sessions if s.family == family and s.peer_ip == target)
    return tuple(s for s in view.sessions if s.family == family and owners.get(s.peer_ip) == target.node)


def build_mesh(objects: Iterable[CalicoNodeStatus], live_nodes: frozenset[str], now: datetime) -> Mesh:
    nodes = node_views(objects, live_nodes)
    owners = _owners(nodes)
    externals: dict[tuple[int, str], ExternalPeer] = {}
    for view in nodes:
        for s in view.sessions:
            if s.peer_ip not in owners:
                externals.setdefault((s.family, s.peer_ip), ExternalPeer(s.peer_ip, s.family, s.peer_type))
    families = tuple(
        f for f in FAMILIES if any(s.family == f for v in nodes for s in v.sessions) or (f == 4 and nodes)
    )
    cells = []
    for family in families:
        for row in nodes:
            for column in nodes:
                if row.node == column.node:
                    continue
                cells.append(
                    Cell(
                        family,
                        row.node,
                        column.node,
                        _toward(row, column, family, owners),
                        _toward(column, row, family, owners),
                    )
                )
            for (peer_family, ip), _peer in sorted(externals.items()):
                if peer_family == family:
                    forward = _toward(row, ip, family, owners)
                    cells.append(Cell(family, row.node, ip, forward, None, external=True))
    ordered_externals = tuple(p for _, p in sorted(externals.items()))
    verdicts = _Diagnosis(nodes, cells, owners).verdicts()
    return Mesh(now, tuple(nodes), ordered_externals, families, tuple(cells), tuple(verdicts))


# --- verdicts ------------------------------------------------------------------------------------------


def _side(node: str, sessions: Sequence[SessionView]) -> str:
    """``node-1: v4 Passive, v6 Active (Socket: Connection refused)``."""
    return f"{node}: " + ", ".join(f"v{s.family} {s.protocol or s.peer_ip} {s.describe()}" for s in sessions)


@dataclass
class _Diagnosis:
    nodes: Sequence[NodeView]
    cells: Sequence[Cell]
    owners: Mapping[str, str]
    explained: set[frozenset[str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.by_name = {v.node: v for v in self.nodes}
        # Unordered node pairs: their cells (row < column), per family.
        self.pairs: dict[frozenset[str], list[Cell]] = defaultdict(list)
        for cell in self.cells:
            if not cell.external and cell.row < cell.column:
                self.pairs[frozenset((cell.row, cell.column))].append(cell)

    def verdicts(self) -> list[Verdict]:
        found = [
            *self._as_mismatch(),
            *self._duplicate_router_ids(),
            *self._isolated(),
            *self._broken_pairs(),
            *self._asymmetric(),
            *self._stale(),
        ]
        return sorted(found, key=lambda v: (_ORDER[v.kind], v.nodes))

    def _down(self, pair: frozenset[str]) -> list[Cell]:
        return [c for c in self.pairs[pair] if c.status is CellStatus.DOWN]

    @staticmethod
    def _sessions(cells: Iterable[Cell]) -> list[SessionView]:
        return [s for c in cells for side in (c.forward, c.backward) if side for s in side]

    def _pair_evidence(self, cells: Sequence[Cell]) -> list[str]:
        lines = []
        for node in sorted({s.node for s in self._sessions(cells)}):
            lines.append(_side(node, [s for s in self._sessions(cells) if s.node == node]))
        for cell in cells:
            for node, side in ((cell.row, cell.forward), (cell.column, cell.backward)):
                if side is None:
                    lines.append(self._own_view(self.by_name[node]).replace(" itself", "", 1))
        return list(dict.fromkeys(lines))

    # AS mismatch: BIRD's text at either end, grouped by the node all mismatched pairs share.
    def _as_mismatch(self) -> list[Verdict]:
        pairs = {
            pair
            for pair in self.pairs
            if any(s.error and _AS_MISMATCH.search(s.error) for s in self._sessions(self._down(pair)))
        }
        self.explained |= pairs
        verdicts = []
        remaining = set(pairs)
        while remaining:
            counts: dict[str, int] = defaultdict(int)
            for pair in remaining:
                for node in pair:
                    counts[node] += 1
            node, count = max(sorted(counts.items()), key=lambda item: item[1])
            group = (
                sorted((p for p in remaining if node in p), key=sorted)
                if count >= 2
                else [min(remaining, key=sorted)]
            )
            remaining -= set(group)
            verdicts.append(self._as_verdict(node if count >= 2 else None, group))
        return verdicts

    def _as_verdict(self, node: str | None, group: Sequence[frozenset[str]]) -> Verdict:
        cells = [c for pair in group for c in self._down(pair)]
        sessions = [s for s in self._sessions(cells) if s.error and _AS_MISMATCH.search(s.error)]
        lines = []
        for s in sessions:
            # BIRD 1.6 prints the local AS of established sessions only.
            known = [f"runs AS {s.local_as}"] if s.local_as else []
            known += [f"expects AS {s.peer_as} of the peer"] if s.peer_as else []
            own = f" ({', '.join(known)})" if known else ""
            lines.append(f"{s.node}{own}: v{s.family} {s.protocol or s.peer_ip}: BIRD says '{s.error}'")
        if node is not None:
            others = sorted({n for pair in group for n in pair} - {node})
            summary = f"{node} is not in the AS its peers expect ({', '.join(others)} refuse it)"
            nodes = (node, *others)
        else:
            nodes = tuple(sorted({n for pair in group for n in pair}))
            summary = f"{' and '.join(nodes)} disagree on an AS number"
        return Verdict(
            VerdictKind.AS_MISMATCH,
            nodes,
            summary,
            tuple(dict.fromkeys(lines)),
            "make the node's AS (Node spec.bgp.asNumber, else the default BGPConfiguration asNumber) "
            "match what its peers are configured with (BGPPeer asNumber)",
        )

    # Duplicate router IDs: the same ID reported by, or seen answering for, two nodes.
    def _duplicate_router_ids(self) -> list[Verdict]:
        claims: dict[str, dict[str, str]] = defaultdict(dict)  # router ID -> node -> how we know
        for view in self.nodes:
            if view.router_id:
                claims[view.router_id].setdefault(
                    view.node, f"{view.node} reports router ID {view.router_id}"
                )
            for s in view.sessions:
                owner = self.owners.get(s.peer_ip)
                if s.peer_id and owner and s.established:
                    claims[s.peer_id].setdefault(
                        owner, f"{s.node} sees {owner} answer with router ID {s.peer_id}"
                    )
        verdicts = []
        for router_id, nodes in sorted(claims.items()):
            if len(nodes) < 2:
                continue
            members = tuple(sorted(nodes))
            for pair in self.pairs:
                if pair <= set(members):
                    self.explained.add(pair)
            verdicts.append(
                Verdict(
                    VerdictKind.DUPLICATE_ROUTER_ID,
                    members,
                    f"{', '.join(members)} share router ID {router_id}: BGP refuses sessions between them",
                    tuple(nodes[n] for n in members),
                    "give every node its own router ID (Node spec.bgp.routerID, or distinct IPv4 addresses)",
                )
            )
        for pair in sorted(self.pairs, key=sorted):
            cells = self._down(pair)
            texts = [s for s in self._sessions(cells) if s.error and _BAD_IDENTIFIER.search(s.error)]
            if texts and pair not in self.explained:
                self.explained.add(pair)
                verdicts.append(
                    Verdict(
                        VerdictKind.DUPLICATE_ROUTER_ID,
                        tuple(sorted(pair)),
                        f"{' and '.join(sorted(pair))} refuse each other's router ID",
                        tuple(f"{s.node}: BIRD says '{s.error}'" for s in texts),
                        "give every node its own router ID (Node spec.bgp.routerID)",
                    )
                )
        return verdicts

    def _established_elsewhere(self, node: str, other: str) -> bool:
        view = self.by_name[node]
        return view.has_data and any(
            s.established and self.owners.get(s.peer_ip) != other for s in view.sessions
        )

    # Node isolated: every pair of the node is down and it has no session up at all.
    def _isolated(self) -> list[Verdict]:
        verdicts = []
        for view in self.nodes:
            pairs = [
                p
                for p in self.pairs
                if view.node in p and any(c.status in (CellStatus.UP, CellStatus.DOWN) for c in self.pairs[p])
            ]
            if not pairs or any(p in self.explained for p in pairs):
                continue
            if any(
                c.status is not CellStatus.DOWN
                for p in pairs
                for c in self.pairs[p]
                if c.status is not CellStatus.NONE
            ):
                continue
            if view.has_data and any(s.established for s in view.sessions):
                continue
            seen_by = [
                (other, side)
                for p in pairs
                for c in self.pairs[p]
                for other, side in ((c.row, c.forward), (c.column, c.backward))
                if other != view.node and side
            ]
            if not seen_by:
                continue
            lines = [self._own_view(view)]
            for other in sorted({o for o, _ in seen_by}):
                sessions = [s for o, side in seen_by if o == other for s in side]
                lines.append(_side(other, sessions).replace(f"{other}: ", f"{other} sees it: ", 1))
            self.explained |= set(pairs)
            verdicts.append(
                Verdict(
                    VerdictKind.NODE_ISOLATED,
                    (view.node,),
                    f"{view.node} has no BGP session up, seen from every side",
                    tuple(lines),
                    f"look at {view.node}: is BIRD running, is TCP 179 open, does its firewall drop BGP",
                )
            )
        return verdicts

    @staticmethod
    def _own_view(view: NodeView) -> str:
        if not view.has_data:
            return f"{view.node} itself: no data (its agent is not live)"
        if view.bird_errors:
            return f"{view.node} itself: " + "; ".join(
                f"BIRD {fam}: {err}" for fam, err in sorted(view.bird_errors.items())
            )
        if not view.sessions:
            return f"{view.node} itself: no BGP sessions reported"
        return _side(f"{view.node} itself", list(view.sessions))

    # Pair broken / one-sided: the down pairs nothing above explained.
    def _broken_pairs(self) -> list[Verdict]:
        verdicts = []
        for pair in sorted(self.pairs, key=sorted):
            cells = self._down(pair)
            if not cells or pair in self.explained:
                continue
            a, b = sorted(pair)
            lines = self._pair_evidence(cells)
            direction = self._direction(cells)
            if direction:
                lines.append(direction[1])
            if self._established_elsewhere(a, b) and self._established_elsewhere(b, a):
                kind = VerdictKind.PAIR_BROKEN
                summary = f"{a} and {b} do not peer, while both have other sessions up"
                remedy = f"the path or a firewall between {a} and {b} (TCP 179 in both directions)"
            elif direction:
                kind, summary = VerdictKind.ONE_SIDED, direction[0]
                remedy = (
                    "check that the dialing side's packets reach the waiting side's TCP 179, "
                    "and that both list each other"
                )
            else:
                kind = VerdictKind.PAIR_BROKEN
                summary = f"{a} and {b} do not peer"
                remedy = f"the path or a firewall between {a} and {b} (TCP 179 in both directions)"
            verdicts.append(Verdict(kind, (a, b), summary, tuple(lines), remedy))
        return verdicts

    @staticmethod
    def _direction(cells: Sequence[Cell]) -> tuple[str, str] | None:
        """(summary, evidence) when one end dials and the other only waits."""
        for cell in cells:
            for dialer, dial, waiter, wait in (
                (cell.row, cell.forward, cell.column, cell.backward),
                (cell.column, cell.backward, cell.row, cell.forward),
            ):
                if dial and wait and any(s.dialing for s in dial) and all(s.waiting for s in wait):
                    word = next(s.word for s in wait if s.waiting)
                    return (
                        f"{dialer} dials {waiter}, which never gets the connection",
                        f"one-sided: {dialer} dials (v{cell.family} "
                        f"{next(s.describe() for s in dial if s.dialing)}) while {waiter} is {word}: "
                        f"{waiter} never received {dialer}'s connection, or {waiter} never dials",
                    )
        return None

    # Asymmetric configuration: a peer type listed at one end only.
    def _asymmetric(self) -> list[Verdict]:
        verdicts = []
        for pair in sorted(self.pairs, key=sorted):
            lines = []
            for cell in self.pairs[pair] if pair not in self.explained else ():
                if cell.forward is None or cell.backward is None:
                    continue
                for lister, listed, mine, theirs in (
                    (cell.row, cell.column, cell.forward, cell.backward),
                    (cell.column, cell.row, cell.backward, cell.forward),
                ):
                    their_types = {s.peer_type for s in theirs}
                    for s in mine:
                        if s.peer_type not in their_types:
                            lines.append(
                                f"{lister} lists {listed} as {s.peer_type or 'a peer'} "
                                f"(v{cell.family} {s.protocol or s.peer_ip}, {s.describe()}); "
                                f"{listed} does not list {lister}"
                                + (f" as {s.peer_type}" if theirs else " at all")
                            )
            if lines:
                verdicts.append(
                    Verdict(
                        VerdictKind.ASYMMETRIC,
                        tuple(sorted(pair)),
                        f"{' and '.join(sorted(pair))} do not list each other the same way",
                        tuple(dict.fromkeys(lines)),
                        "a BGPPeer that selects only one of the two nodes, or a node outside the "
                        "node-to-node mesh: make the peering symmetric",
                    )
                )
        return verdicts

    def _stale(self) -> list[Verdict]:
        verdicts = []
        for view in self.nodes:
            if view.has_data:
                continue
            if view.agent is AgentState.NONE or view.last_updated is None:
                detail = f"{view.node}: no agent has reported (objects: {', '.join(view.objects)})"
            else:
                detail = (
                    f"{view.node}: its agent's liveness expired; last report at "
                    f"{view.last_updated.strftime('%Y-%m-%dT%H:%M:%SZ')}"
                )
            verdicts.append(
                Verdict(
                    VerdictKind.STALE_AGENT,
                    (view.node,),
                    f"{view.node} has no data: its sessions are shown as no data, not as down",
                    (detail,),
                    f"check the calico-nodestatus agent on {view.node} (its pod and log)",
                )
            )
        return verdicts
