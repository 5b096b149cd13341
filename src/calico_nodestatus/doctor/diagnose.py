"""The diagnosis: evidence in, verdicts out (pure: no sockets, netlink, files or clocks).

Checks, in report order: `bird-socket` per family, `bgp-session` (one per session that is not
Established, plus one summary), `bgp-address` (the address BIRD peers from versus the interface
that routes to the failing peers and the configured autodetection method), `duplicates`
(router IDs across nodes, own addresses among the peers) and `datastore` (reachable, liveness).
"""

from __future__ import annotations

import functools
import ipaddress
import shlex
from collections.abc import Iterable, Mapping, Sequence

from calico_nodestatus.datastore.base import PermissionDenied
from calico_nodestatus.doctor.farend import far_ends
from calico_nodestatus.doctor.model import (
    AddressEvidence,
    AgentStatusEvidence,
    Check,
    ConnectOutcome,
    DaemonEvidence,
    DatastoreEvidence,
    Evidence,
    PeerEvidence,
    Report,
    Verdict,
)
from calico_nodestatus.health.autodetect import (
    AutodetectError,
    AutodetectMethod,
    Detection,
    HostInterface,
    IPInterface,
    RouteLookup,
    detect,
    parse_method,
)

OPEN_PORT_REMEDY = (
    "allow TCP port 179 in both directions between the nodes' BGP addresses (host firewall: "
    "nftables/iptables; cloud security groups; Calico host endpoint policy), then check from both "
    "nodes with `nc -zv <peer> 179`"
)


def diagnose(evidence: Evidence) -> Report:
    """Every check over one node's evidence."""
    checks = [
        *check_daemons(evidence.daemons.values()),
        *check_sessions(evidence.peers, _bgp_address(evidence), far_ends(evidence)),
        *check_bgp_address(evidence),
        check_duplicates(evidence),
        check_datastore(evidence.node, evidence.datastore),
        *check_agent_status(evidence.node, evidence.agent),
    ]
    return Report(node=evidence.node, checks=checks)


# --- BIRD daemons -------------------------------------------------------------------------------


def check_daemons(daemons: Iterable[DaemonEvidence]) -> list[Check]:
    """A family without any control socket is simply not in use, unless its socket was named
    explicitly or no BIRD answers at all (then BIRD is not running)."""
    ordered = sorted(daemons, key=lambda d: d.family)
    any_answered = any(d.socket is not None for d in ordered)
    return [check_daemon(d, optional=any_answered) for d in ordered]


def check_daemon(daemon: DaemonEvidence, *, optional: bool = True) -> Check:
    label = "BIRD" if daemon.family == 4 else "BIRD6"
    status = daemon.status

    def result(
        verdict: Verdict,
        summary: str,
        evidence: list[str],
        remedy: str | None = None,
        details: dict[str, object] | None = None,
    ) -> Check:
        return Check(
            check="bird-socket",
            subject=f"IPv{daemon.family}",
            verdict=verdict,
            summary=summary,
            evidence=evidence,
            remedy=remedy,
            details=details or {},
        )

    if status is None and daemon.unavailable:
        tried = [f"{path}: {error}" for path, error in daemon.unavailable]
        if daemon.missing and optional and not daemon.explicit:
            summary = f"no IPv{daemon.family} BIRD on this node (no control socket exists)"
            return result(Verdict.OK, summary, tried)
        cause = "socket missing" if daemon.missing else "socket not answering"
        return result(
            Verdict.FAIL,
            f"{label} is not running ({cause})",
            tried,
            remedy=(
                f"start {label.lower()} (in calico-node: `sv status {label.lower()}` and the container log "
                "say why it stopped); if it runs elsewhere, point --bird-socket/--bird6-socket at its "
                "control socket"
            ),
        )
    if status is None:
        return result(
            Verdict.FAIL,
            f"{label} at {daemon.socket} did not answer 'show status'",
            list(daemon.errors),
            remedy=f"{label} is wedged or overloaded: check its log and CPU; restart it if it stays so",
        )
    shared = f" (one BIRD 2 daemon serves IPv{daemon.shared_with} too)" if daemon.shared_with else ""
    facts = [
        f"socket {daemon.socket}{shared}",
        f"version {status.version or '?'}, router ID {status.router_id or '?'}",
        f"last reboot {status.last_reboot or '?'}, last reconfiguration {status.last_reconfiguration or '?'}",
        f"status: {status.message}",
    ]
    details: dict[str, object] = {
        "socket": daemon.socket,
        "version": status.version,
        "routerID": status.router_id,
        "message": status.message,
    }
    gr = status.graceful_restart
    if gr is not None:
        facts.append(
            f"{gr.message}: waiting for {gr.waiting_for if gr.waiting_for is not None else '?'}, "
            f"wait timer {gr.wait_timer or '?'}"
        )
        return result(
            Verdict.WARN,
            f"{label} is in graceful restart recovery",
            facts,
            remedy=(
                "nothing to do if peers re-establish: recovery ends when they do or when the wait timer "
                "expires; calico-node's readiness fails meanwhile"
            ),
            details=details,
        )
    if daemon.errors or not status.is_up:
        return result(
            Verdict.WARN,
            f"{label} answers but is not simply up: {status.message}",
            facts + list(daemon.errors),
            remedy="re-run in a few seconds; a reconfiguration or shutdown in progress ends by itself",
            details=details,
        )
    return result(
        Verdict.OK,
        f"{label} {status.version or '?'} is up, router ID {status.router_id or '?'}",
        facts,
        details=details,
    )


# --- BGP sessions -------------------------------------------------------------------------------


def check_sessions(
    peers: Sequence[PeerEvidence], bgp_ip4: str | None = None, far: Mapping[str, str] | None = None
) -> list[Check]:
    """``far``: per peer IP, how the peer node's own status sees the session (doctor.farend)."""
    established = [p for p in peers if p.established]
    checks = [
        check_session(p, bgp_ip4 if p.family == 4 else None, (far or {}).get(p.ip))
        for p in peers
        if not p.established
    ]
    summary = f"{len(established)} of {len(peers)} BGP sessions Established"
    checks.append(
        Check(
            check="bgp-sessions",
            subject="all",
            verdict=Verdict.OK if len(established) == len(peers) else Verdict.FAIL,
            summary=summary if peers else "no Calico BGP peers configured",
            evidence=[f"{p.ip} ({p.protocol}): {p.bgp_state}" for p in peers],
        )
    )
    return checks


def _bird_says(peer: PeerEvidence) -> str:
    text = peer.bird_error
    return f'BIRD says: "{text}"' if text else f"BIRD reports no error text (state {peer.bgp_state})"


def check_session(peer: PeerEvidence, bgp_ip: str | None = None, far_end: str | None = None) -> Check:
    """A session that is not Established: the TCP probe says whether the port can be reached,
    BIRD's own error text says why the session fails anyway. ``bgp_ip``: the address BIRD peers
    from, when known (a probe from the kernel's source can succeed where BIRD's source fails);
    ``far_end``: the peer node's own view of the session, from the datastore."""
    subject = f"{peer.ip} ({peer.protocol})"
    where = f"{peer.ip}:{peer.port}"
    evidence = [f"protocol {peer.protocol}: {peer.details.protocol.state}, BGP state {peer.bgp_state}"]
    evidence.append(_bird_says(peer))
    as_numbers = [
        f"{what} AS {number}"
        for what, number in (("neighbor", peer.details.neighbor_as), ("local", peer.details.local_as))
        if number is not None
    ]
    if as_numbers:
        evidence.append(", ".join(as_numbers))
    if far_end:
        evidence.append(far_end)
    if peer.route is not None:
        evidence.append(f"route to {peer.ip}: {_route_text(peer.route)}")
    elif peer.route_error:
        evidence.append(f"route to {peer.ip}: {peer.route_error}")
    details: dict[str, object] = {
        "peerIP": peer.ip,
        "port": peer.port,
        "protocol": peer.protocol,
        "bgpState": peer.bgp_state,
        "birdError": peer.bird_error,
    }
    if far_end:
        details["farEnd"] = far_end

    def result(verdict: Verdict, summary: str, remedy: str | None) -> Check:
        return Check(
            check="bgp-session",
            subject=subject,
            verdict=verdict,
            summary=summary,
            evidence=evidence,
            remedy=remedy,
            details=details,
        )

    if peer.details.protocol.state == "down" and not peer.details.protocol.info:
        return result(
            Verdict.WARN, f"session to {peer.ip} is administratively down", f"`birdc enable {peer.protocol}`"
        )
    probe = peer.probe
    if probe is None:
        return result(Verdict.FAIL, f"BGP not established with {peer.ip}", None)
    details["tcpConnect"] = probe.outcome.value
    evidence.append(
        f"TCP connect from this node to {where}: {probe.detail} after {probe.seconds:.2f}s "
        f"(timeout {probe.timeout:g}s)"
    )
    outcome = probe.outcome
    if outcome is ConnectOutcome.TIMEOUT:
        return result(
            Verdict.FAIL,
            f"TCP port {peer.port} on {peer.ip} is filtered: connecting from this node gets no answer",
            OPEN_PORT_REMEDY,
        )
    if outcome is ConnectOutcome.BLOCKED:
        return result(
            Verdict.FAIL,
            f"TCP port {peer.port} to {peer.ip} is filtered by this node's own firewall ({probe.detail})",
            "remove the local rule that drops BGP: look for port 179 or the peer's address in "
            "`nft list ruleset` / `iptables-save`; " + OPEN_PORT_REMEDY,
        )
    if outcome is ConnectOutcome.REFUSED:
        return result(
            Verdict.FAIL,
            f"{peer.ip} refuses TCP port {peer.port}: nothing listens for BGP there",
            f"check that BIRD runs on the peer and that {peer.ip} really is the peer's BGP address "
            "(its IP autodetection may have picked another interface's address); or a firewall "
            "rejects with a reset",
        )
    if outcome is ConnectOutcome.UNREACHABLE:
        return result(
            Verdict.FAIL,
            f"{peer.ip} is unreachable from this node ({probe.detail})",
            f"{peer.ip} is not on any network this node reaches: if it is the peer node's address, that "
            "node's IP autodetection probably picked the wrong interface (run `calico-nodestatus doctor` "
            "there and set IP_AUTODETECTION_METHOD); otherwise fix the routing between the nodes",
        )
    if outcome is ConnectOutcome.ERROR:
        return result(Verdict.FAIL, f"TCP connect to {where} failed: {probe.detail}", None)
    source = peer.route.source if peer.route else None
    if bgp_ip is not None and source is not None and str(source) != bgp_ip:
        return result(
            Verdict.FAIL,
            f"TCP port {peer.port} on {peer.ip} is reachable from {source}, but BIRD peers from {bgp_ip}, "
            f"an address {peer.ip} does not answer ({_bird_says(peer)})",
            "this node's BGP address is on the wrong interface: see the bgp-address check",
        )
    return result(Verdict.FAIL, *_reachable_but_failing(peer))


def _reachable_but_failing(peer: PeerEvidence) -> tuple[str, str]:
    """Summary and remedy when the port answers: the transport is fine, so BIRD's error text
    names the real problem."""
    error = (peer.bird_error or "").lower()
    reachable = f"TCP port {peer.port} on {peer.ip} is reachable, but the session fails"
    if "bad peer as" in error or "bad as" in error:
        return (
            f"{reachable}: AS number mismatch ({_bird_says(peer)})",
            f"this node expects AS {peer.details.neighbor_as} for {peer.ip}, and the peer announces "
            "another: make the BGPPeer's asNumber (or the mesh's AS in BGPConfiguration) match the "
            "peer node's AS, or fix the peer node's asNumber",
        )
    if peer.bgp_state == "Passive" or (peer.bgp_state in ("Active", "Idle") and not peer.bird_error):
        return (
            f"{reachable}: this side waits for the peer to connect and it never does ({_bird_says(peer)})",
            f"check on {peer.ip} that it has this node's BGP address as a neighbour (a wrong neighbour "
            "address there means it never dials) and that it is not passive too",
        )
    if "connection closed" in error or "connection refused" in error or "connection reset" in error:
        return (
            f"{reachable}: the peer drops our connections ({_bird_says(peer)})",
            f"the peer's BIRD does not accept this node: check that {peer.ip}'s neighbour address for "
            "this node equals the address this node peers from (see the bgp-address check)",
        )
    return (
        f"{reachable} ({_bird_says(peer)})",
        "compare both sides' BGP configuration (neighbour addresses, AS numbers, passive, password)",
    )


def _route_text(route: RouteLookup) -> str:
    via = f" via {route.gateway}" if route.gateway else ""
    src = f" src {route.source}" if route.source else ""
    return f"dev {route.interface or '?'}{via}{src}"


# --- the address BIRD peers from ----------------------------------------------------------------


def _owner(interfaces: Sequence[HostInterface], ip: str) -> tuple[HostInterface, IPInterface] | None:
    address = ipaddress.ip_address(ip)
    for interface in interfaces:
        for assigned in interface.addresses:
            if assigned.ip == address:
                return interface, assigned
    return None


def _bgp_address(evidence: Evidence) -> str | None:
    """The IPv4 address BIRD peers from. Calico's BIRD config uses the node's IPv4 address both as
    every session's `source address` and as the router ID, and `show protocols all` does not show
    the source of a session that is down, so the router ID stands for it."""
    daemon = evidence.daemons.get(4)
    if daemon is None or daemon.status is None or not daemon.status.router_id:
        return None
    return daemon.status.router_id


def check_bgp_address(evidence: Evidence) -> list[Check]:
    """IPv4: does the address BIRD peers from sit on the interface that routes to the peers, and
    does the configured autodetection method pick it? When not, suggest a method that picks the
    right interface, verified by running the autodetection library with it."""
    address = evidence.address
    bgp_ip = _bgp_address(evidence)
    peers_v4 = [p for p in evidence.peers if p.family == 4]
    subject = "IPv4"
    if address.error is not None:
        return [
            Check(
                check="bgp-address",
                subject=subject,
                verdict=Verdict.WARN,
                summary="cannot read this node's interfaces",
                evidence=[address.error],
            )
        ]
    if bgp_ip is None or not peers_v4:
        return []
    try:
        method = parse_method(address.method)
    except AutodetectError as exc:
        return [
            Check(
                check="bgp-address",
                subject=subject,
                verdict=Verdict.FAIL,
                summary=str(exc),
                remedy="set IP_AUTODETECTION_METHOD to a valid method",
            )
        ]
    interfaces = address.interfaces
    detection = _detect(method, interfaces, address.routes)
    owner = _owner(interfaces, bgp_ip)
    owner_name = owner[0].name if owner else None
    evidence_lines = [
        f"BIRD peers from {bgp_ip} (router ID = Calico's node IPv4 address)"
        + (f" on interface {owner_name} ({owner[1]})" if owner else ", which is not on any local interface"),
        f"IP_AUTODETECTION_METHOD={method}: "
        + (f"picks {detection.address} on {detection.interface}" if detection.ok else detection.message),
        *detection.warnings,
    ]
    failing = [p for p in peers_v4 if not p.established]
    wrong_way = []
    routed = [p for p in failing if p.route is not None]
    for peer in failing:
        if peer.route is None:
            evidence_lines.append(f"{peer.ip}: no route ({peer.route_error or 'lookup failed'})")
            continue
        evidence_lines.append(f"{peer.ip} ({peer.bgp_state}): {_route_text(peer.route)}")
        if peer.route.interface != owner_name or (peer.route.source and str(peer.route.source) != bgp_ip):
            wrong_way.append(peer)
    details: dict[str, object] = {
        "bgpAddress": bgp_ip,
        "bgpInterface": owner_name,
        "method": str(method),
        "methodPicks": detection.to_dict(),
    }
    if wrong_way:
        return [
            _wrong_interface(
                bgp_ip=bgp_ip,
                owner_name=owner_name,
                wrong_way=wrong_way,
                method=method,
                detection=detection,
                address=address,
                details=details,
                evidence_lines=evidence_lines,
            )
        ]
    picked = str(detection.address.ip) if detection.address else None
    if owner is not None and picked is not None and picked != bgp_ip:
        return [
            Check(
                check="bgp-address",
                subject=subject,
                verdict=Verdict.WARN,
                summary=(
                    f"BIRD peers from {bgp_ip} but IP_AUTODETECTION_METHOD={method} would now pick "
                    f"{detection.address} on {detection.interface}"
                ),
                evidence=evidence_lines,
                remedy=(
                    "the node address was set another way (IP=...) or the interfaces changed since "
                    "calico-node started; pin the intended interface so a restart keeps it"
                ),
                details=details,
            )
        ]
    verdict = Verdict.WARN if method.warnings else Verdict.OK
    return [
        Check(
            check="bgp-address",
            subject=subject,
            verdict=verdict,
            summary=(
                f"BIRD peers from {bgp_ip}"
                + (f" on {owner_name}" if owner_name else "")
                + (", and the routes to its failing peers leave from the same interface" if routed else "")
            ),
            evidence=evidence_lines,
            remedy="anchor the interface regex (`interface=^eth0$`)" if method.warnings else None,
            details=details,
        )
    ]


def _detect(
    method: AutodetectMethod, interfaces: Sequence[HostInterface], routes: dict[str, RouteLookup]
) -> Detection:
    """The autodetection library over the gathered interfaces; `can-reach` uses the gathered routes."""

    def route_lookup(destination: str, family: int) -> RouteLookup:
        route = routes.get(destination)
        if route is None:
            raise AutodetectError(f"no route to {destination} was looked up")
        return route

    return detect(method, 4, interfaces, route_lookup=route_lookup)


def _wrong_interface(
    *,
    bgp_ip: str,
    owner_name: str | None,
    wrong_way: list[PeerEvidence],
    method: AutodetectMethod,
    detection: Detection,
    address: AddressEvidence,
    details: dict[str, object],
    evidence_lines: list[str],
) -> Check:
    interfaces = address.interfaces
    first = wrong_way[0]
    assert first.route is not None  # wrong_way holds only peers with a route
    right_interface = first.route.interface
    right_ip = first.route.source
    candidates: list[str] = []
    if right_interface:
        candidates.append(f"interface=^{right_interface}$")
    candidates.append(f"can-reach={first.ip}")
    right = _owner(interfaces, str(right_ip)) if right_ip else None
    if right is not None:
        candidates.append(f"cidr={right[1].network}")
    verified = []
    for text in candidates:
        result = _detect(parse_method(text), interfaces, address.routes)
        picks = str(result.address.ip) if result.address else None
        outcome = f"picks {result.address} on {result.interface}" if result.ok else result.message
        evidence_lines.append(f"checked IP_AUTODETECTION_METHOD={text}: {outcome}")
        if picks is not None and right_ip is not None and picks == str(right_ip):
            verified.append(text)
    details["suggestedMethods"] = verified
    peers = ", ".join(p.ip for p in wrong_way)
    method_picked_it = detection.address is not None and str(detection.address.ip) == bgp_ip
    summary = (
        f"BIRD peers from {bgp_ip}"
        + (f" on {owner_name}" if owner_name else "")
        + f", but the failing peers ({peers}) are reached via {right_interface or '?'}"
        + (f" with source {right_ip}" if right_ip else "")
        + (f": IP_AUTODETECTION_METHOD={method} picked the wrong interface" if method_picked_it else "")
    )
    if verified:
        setting = f"IP_AUTODETECTION_METHOD={verified[0]}"
        remedy = (
            f"set {setting} (verified: it picks {right_ip} on {right_interface}), e.g. "
            f"`kubectl set env daemonset/calico-node -n kube-system {shlex.quote(setting)}`, then restart "
            "the calico-node pods"
        )
        if len(verified) > 1:
            remedy += "; also verified: " + ", ".join(verified[1:])
    else:
        remedy = (
            f"make calico-node use the address on {right_interface or 'the interface reaching the peers'} "
            "(IP_AUTODETECTION_METHOD=interface=^NAME$ or an explicit IP=)"
        )
    return Check(
        check="bgp-address",
        subject="IPv4",
        verdict=Verdict.FAIL,
        summary=summary,
        evidence=evidence_lines,
        remedy=remedy,
        details=details,
    )


# --- duplicates across nodes --------------------------------------------------------------------


def check_duplicates(evidence: Evidence) -> Check:
    """Router IDs shared by several nodes (Calico's router ID is the node IPv4 address, so this is
    also the duplicate node IP case), and this node's own addresses among its BGP peers."""
    local_ips = {str(a.ip) for i in evidence.address.interfaces for a in i.addresses}
    self_peers = [p.ip for p in evidence.peers if p.ip in local_ips]
    router_ids: dict[str, set[str]] = {}
    for status in evidence.datastore.statuses:
        if status.spec.node == evidence.node:
            continue
        agent = status.status.agent
        for daemon in (agent.bird_v4, agent.bird_v6):
            if daemon.router_id:
                router_ids.setdefault(daemon.router_id, set()).add(status.spec.node)
    own = {d.status.router_id for d in evidence.daemons.values() if d.status and d.status.router_id}
    for rid in own:
        router_ids.setdefault(rid, set()).add(evidence.node)
    shared = {rid: sorted(nodes) for rid, nodes in router_ids.items() if len(nodes) > 1}
    lines = [f"router ID {rid} is used by {', '.join(nodes)}" for rid, nodes in sorted(shared.items())]
    lines += [f"peer {ip} is an address of this node" for ip in self_peers]
    compared = len({s.spec.node for s in evidence.datastore.statuses} - {evidence.node})
    if lines:
        return Check(
            check="duplicates",
            subject=evidence.node,
            verdict=Verdict.FAIL,
            summary="nodes share addresses: " + "; ".join(lines),
            evidence=lines,
            remedy=(
                "every node needs its own IPv4 address (and router ID): fix the node whose "
                "IP/IP_AUTODETECTION_METHOD picked an address another node has"
            ),
            details={"routerIDs": shared, "selfPeers": self_peers},
        )
    return Check(
        check="duplicates",
        subject=evidence.node,
        verdict=Verdict.OK,
        summary=(
            f"router IDs unique across {compared + 1} nodes"
            if compared
            else "no other nodes' statuses to compare router IDs with"
        ),
        evidence=[f"this node's router ID: {', '.join(sorted(own)) or '?'}"],
    )


# --- datastore and agent liveness ---------------------------------------------------------------


def check_datastore(node: str, store: DatastoreEvidence) -> Check:
    result = functools.partial(Check, check="datastore", subject=node)
    if not store.configured:
        return result(
            verdict=Verdict.WARN,
            summary=f"no datastore configured ({store.description}): agent liveness not checked",
            remedy="set DATASTORE_TYPE and its settings (or --db) to check the agent and other nodes too",
        )
    if store.error is not None:
        return result(
            verdict=Verdict.WARN,
            summary=f"datastore {store.description} is not reachable",
            evidence=[store.error],
            remedy="check the datastore settings and that it is up; the BGP checks above do not need it",
        )
    record = store.liveness
    if record is None:
        return result(
            verdict=Verdict.WARN,
            summary=f"datastore reachable, but no fresh liveness record for node {node}",
            evidence=[f"datastore {store.description}", f"{len(store.statuses)} CalicoNodeStatus objects"],
            remedy=f"start (or restart) `calico-nodestatus agent` for node {node}; check its log",
        )
    age = (store.now - record.renewed_at).total_seconds()
    return result(
        verdict=Verdict.OK,
        summary=f"datastore reachable; agent liveness renewed {age:.0f}s ago (TTL {record.ttl_seconds:g}s)",
        evidence=[f"datastore {store.description}", f"holder {record.holder}"],
    )


# --- the agent's own view (its status file) -----------------------------------------------------

_PERMISSION_REMEDY = (
    "the agent's identity lacks a permission: apply deploy/rbac.yaml as shipped to its ServiceAccount "
    "(or grant what the message names), then watch the agent's log for status_written"
)


def check_agent_status(node: str, agent: AgentStatusEvidence) -> list[Check]:
    """One check per component the agent reports not ready; nothing without a status file."""
    if agent.path is None:
        return []
    result = functools.partial(Check, check="agent", subject=node)
    if agent.error is not None:
        return [
            result(
                verdict=Verdict.WARN,
                summary="the agent's status file cannot be read",
                evidence=[agent.error],
                remedy="check that `calico-nodestatus agent --status-file` runs on this node with this path",
            )
        ]
    failing = {name: state for name, state in agent.components.items() if not state.ready}
    if not failing:
        return [
            result(
                verdict=Verdict.OK,
                summary=f"the agent reports {', '.join(agent.components) or 'no components'} ready",
                evidence=[f"status file {agent.path}"],
            )
        ]
    return [
        result(
            verdict=Verdict.FAIL,
            summary=f"the agent reports {name} not ready: {state.reason or 'no reason given'}",
            evidence=[f"status file {agent.path}"],
            remedy=_PERMISSION_REMEDY if PermissionDenied.MARKER in state.reason else None,
        )
        for name, state in failing.items()
    ]
