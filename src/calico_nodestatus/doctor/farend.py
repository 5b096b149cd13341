"""The far end of a failing session (pure): what the peer node's own CalicoNodeStatus says about
the same session, so "filtered" becomes "filtered in this direction". Read from the statuses the
doctor already has (the peer's agent reports BIRD's view in the bgp-sessions annotation)."""

from __future__ import annotations

from collections.abc import Iterable

from calico_nodestatus.doctor.model import Evidence, PeerEvidence
from calico_nodestatus.mesh.analysis import NodeView, node_views, normal_ip


def _own_addresses(evidence: Evidence) -> set[str]:
    addresses = {normal_ip(str(a.ip)) for i in evidence.address.interfaces for a in i.addresses}
    for daemon in evidence.daemons.values():
        if daemon.status is not None and daemon.status.router_id:
            addresses.add(normal_ip(daemon.status.router_id))
    return addresses


def _owner(views: Iterable[NodeView], ip: str, node: str) -> NodeView | None:
    return next((v for v in views if v.node != node and ip in v.addresses), None)


def far_end(peer: PeerEvidence, view: NodeView, own: set[str], node: str) -> str:
    """One evidence line: how ``view`` (the peer's node) sees its session toward this node."""
    who = f"{peer.ip} ({view.node})"
    if not view.has_data:
        return f"{who}: no current report of its own (its agent is not live); its view is unknown"
    family = 6 if ":" in peer.ip else 4
    if f"v{family}" in view.bird_errors:
        return f"{who} reports that its own BIRD does not answer: {view.bird_errors[f'v{family}']}"
    toward = [s for s in view.sessions if s.family == family and (s.peer_ip in own)]
    if not toward:
        return (
            f"{who} has no session toward this node ({node}): it does not list this node as a peer "
            "(a missing BGPPeer or node-mesh membership on its side)"
        )
    session = toward[0]
    ours = peer.bgp_state
    if session.established:
        return f"{who} sees the session Established (its report may predate this check)"
    if session.waiting:
        reason = (
            "it never received our connection"
            if ours in ("Active", "Connect", "OpenSent")
            else "neither end dials the other"
        )
        return f"{who} sees this node as {session.describe()}: {reason}"
    if session.dialing:
        return f"{who} sees this node as {session.describe()}: it dials this node and gets no session"
    return f"{who} sees this node as {session.describe()}"


def far_ends(evidence: Evidence) -> dict[str, str]:
    """Peer IP -> the far end's view, for every failing session whose peer node reports."""
    store = evidence.datastore
    views = node_views(store.statuses, store.alive)
    own = _own_addresses(evidence)
    mine = next((v for v in views if v.node == evidence.node), None)
    if mine is not None:
        own |= set(mine.addresses)
    lines = {}
    for peer in evidence.peers:
        if peer.established:
            continue
        view = _owner(views, normal_ip(peer.ip), evidence.node)
        if view is not None:
            lines[peer.ip] = far_end(peer, view, own, evidence.node)
    return lines
