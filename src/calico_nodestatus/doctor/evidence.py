"""The doctor's thin I/O layer: gathers the evidence on this node (its network namespace).

BIRD through `collect.gather` (one connection per daemon), a real TCP connect to every peer
whose session is not Established, the kernel's interfaces and routes through netlink, and the
datastore's liveness record and node statuses. Nothing here decides anything: see diagnose.py.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.bird.errors import BirdUnavailable
from calico_nodestatus.bird.names import decode_peer_name
from calico_nodestatus.collect.gather import BirdSockets, CollectionResult, gather
from calico_nodestatus.datastore.base import DatastoreError
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.doctor.model import (
    BGP_PORT,
    AddressEvidence,
    AgentStatusEvidence,
    ComponentState,
    ConnectOutcome,
    ConnectProbe,
    DaemonEvidence,
    DatastoreEvidence,
    Evidence,
    PeerEvidence,
)
from calico_nodestatus.health.autodetect import (
    AutodetectError,
    RouteLookup,
    lookup_route,
    read_interfaces,
)
from calico_nodestatus.health.statusfile import StatusFileError, read_status_file

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_DATASTORE_TIMEOUT = 5.0

_OUTCOMES = {
    errno.ECONNREFUSED: ConnectOutcome.REFUSED,
    errno.ETIMEDOUT: ConnectOutcome.TIMEOUT,
    errno.EPERM: ConnectOutcome.BLOCKED,
    errno.EACCES: ConnectOutcome.BLOCKED,
    errno.ENETUNREACH: ConnectOutcome.UNREACHABLE,
    errno.EHOSTUNREACH: ConnectOutcome.UNREACHABLE,
}


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    node: str
    bird_socket: str | None = None
    bird6_socket: str | None = None
    autodetection_method: str = ""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    datastore: DatastoreConfig | None = None  # None: no datastore configured
    status_file: Path | None = None  # the agent's status file, when known


async def probe_tcp(address: str, port: int, connect_timeout: float) -> ConnectProbe:
    """A real TCP connect (kernel-chosen source) to address:port, closed again at once."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(connect_timeout):
            _, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        outcome, detail = ConnectOutcome.TIMEOUT, "no answer (timed out)"
    except OSError as exc:
        outcome = _OUTCOMES.get(exc.errno or 0, ConnectOutcome.ERROR)
        detail = os.strerror(exc.errno) if exc.errno else str(exc)
    else:
        writer.close()
        await _closed(writer)
        outcome, detail = ConnectOutcome.CONNECTED, "connected"
    return ConnectProbe(address, port, outcome, detail, time.perf_counter() - started, connect_timeout)


async def _closed(writer: asyncio.StreamWriter) -> None:
    # The peer's BIRD may reset a connection from an unknown address at once; that is fine.
    try:
        await writer.wait_closed()
    except OSError:
        return


def daemon_evidence(
    collection: CollectionResult, sockets: BirdSockets, options: DoctorOptions
) -> dict[int, DaemonEvidence]:
    daemons = {}
    overrides = ((4, sockets.v4, options.bird_socket), (6, sockets.v6, options.bird6_socket))
    for family, candidates, override in overrides:
        errors = [e for (f, _), e in collection.errors.items() if f == family]
        unavailable = next((e for e in errors if isinstance(e, BirdUnavailable)), None)
        path = collection.sockets[family]
        other = 6 if family == 4 else 4
        daemons[family] = DaemonEvidence(
            family=family,
            candidates=candidates,
            explicit=override is not None,
            socket=path,
            status=collection.daemons[family],
            unavailable=unavailable.failures if unavailable else (),
            errors=tuple(dict.fromkeys(str(e) for e in errors if not isinstance(e, BirdUnavailable))),
            shared_with=other if path is not None and path == collection.sockets[other] else None,
        )
    return daemons


def _route(destination: str, family: int) -> tuple[RouteLookup | None, str | None]:
    try:
        return lookup_route(destination, family), None
    except AutodetectError as exc:
        return None, str(exc)


def _peer_routes(
    peers: list[tuple[int, str]],
) -> dict[str, tuple[RouteLookup | None, str | None]]:
    return {ip: _route(ip, family) for family, ip in peers}


async def peer_evidence(collection: CollectionResult, connect_timeout: float) -> tuple[PeerEvidence, ...]:
    decoded = [
        (family, details, name)
        for family in (4, 6)
        for details in collection.protocols[family]
        if (name := decode_peer_name(details.protocol.name)) is not None
    ]
    # pyroute2's synchronous netlink runs its own event loop, so it gets a thread of its own.
    routes = await asyncio.to_thread(_peer_routes, [(family, name.ip) for family, _, name in decoded])
    peers = [
        PeerEvidence(
            family=family,
            ip=name.ip,
            port=name.port or BGP_PORT,
            details=details,
            route=routes[name.ip][0],
            route_error=routes[name.ip][1],
        )
        for family, details, name in decoded
    ]
    failing = [i for i, p in enumerate(peers) if not p.established]
    probes = await asyncio.gather(*(probe_tcp(peers[i].ip, peers[i].port, connect_timeout) for i in failing))
    for i, probe in zip(failing, probes, strict=True):
        peers[i] = replace(peers[i], probe=probe)
    return tuple(peers)


def address_evidence(method: str, peers: tuple[PeerEvidence, ...]) -> AddressEvidence:
    """Blocking (netlink): call it in a thread from async code."""
    try:
        interfaces = tuple(read_interfaces())
    except (AutodetectError, OSError) as exc:
        return AddressEvidence(method=method, error=str(exc))
    routes = {p.ip: p.route for p in peers if p.route is not None}
    return AddressEvidence(method=method, interfaces=interfaces, routes=routes)


def describe_datastore(config: DatastoreConfig) -> str:
    if config.type == "embedded":
        return f"embedded {config.db_path}"
    if config.type == "etcdv3":
        return f"etcdv3 {','.join(config.etcd_endpoints)}"
    return f"kubernetes {config.kubeconfig or '(in-cluster)'}"


async def datastore_evidence(
    node: str, config: DatastoreConfig | None, limit: float = DEFAULT_DATASTORE_TIMEOUT
) -> DatastoreEvidence:
    """This node's liveness record and every node's status. An embedded datastore whose file does
    not exist counts as not configured (and is not created)."""
    now = datetime.now(UTC)
    if config is None or (config.type == "embedded" and not config.db_path.exists()):
        where = describe_datastore(config) if config else "none"
        return DatastoreEvidence(configured=False, description=where + " (absent)", now=now)
    description = describe_datastore(config)
    try:
        async with asyncio.timeout(limit), open_datastore(config) as store:
            liveness = await store.get_liveness(node)
            statuses, _ = await store.list()
            alive = frozenset(r.node for r in await store.list_liveness() if r.is_alive(now))
    except TimeoutError:
        return DatastoreEvidence(True, description, now, error=f"no answer within {limit:g}s")
    except (DatastoreError, OSError) as exc:
        return DatastoreEvidence(True, description, now, error=str(exc))
    return DatastoreEvidence(True, description, now, liveness=liveness, statuses=tuple(statuses), alive=alive)


def agent_status_evidence(path: Path | None) -> AgentStatusEvidence:
    if path is None:
        return AgentStatusEvidence()
    try:
        report = read_status_file(path)
    except StatusFileError as exc:
        return AgentStatusEvidence(path=str(path), error=str(exc))
    components = {
        name: ComponentState(ready=component.ready, reason=component.reason)
        for name, component in sorted(report.components.items())
    }
    return AgentStatusEvidence(path=str(path), components=components)


async def gather_evidence(options: DoctorOptions) -> Evidence:
    sockets = BirdSockets.from_overrides(options.bird_socket, options.bird6_socket)
    collection = await gather(sockets, (NodeStatusClass.AGENT, NodeStatusClass.BGP))
    peers, store = await asyncio.gather(
        peer_evidence(collection, options.connect_timeout),
        datastore_evidence(options.node, options.datastore),
    )
    return Evidence(
        node=options.node,
        daemons=daemon_evidence(collection, sockets, options),
        peers=peers,
        address=await asyncio.to_thread(address_evidence, options.autodetection_method, peers),
        datastore=store,
        agent=await asyncio.to_thread(agent_status_evidence, options.status_file),
    )
