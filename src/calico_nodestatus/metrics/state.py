"""What the exporter serves, from two sources with no bookkeeping shared between them.

- ``MetricsState``: what needs the history of collections (duration histograms, flaps, per-family
  error counts, each section's latest value). The agent's collection hook calls ``record_result``
  / ``record_collection_failure`` from its loop; a scrape calls ``view()`` from the HTTP thread and
  gets an immutable copy, so a scrape never waits on BIRD or the datastore. Each section (agent,
  BGP, routes) keeps its latest collected value: a collection for objects that did not ask for a
  class does not make that class's series disappear.
- ``AgentView``: the agent's own counters, objects and liveness, which the agent already keeps;
  the exporter reads them from the agent at scrape time (the agent is their single source).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from calico_nodestatus.api import (
    BGPDaemonState,
    BGPDaemonStatus,
    BGPPeerType,
    BGPSessionState,
    CalicoNodeAgentStatus,
    CalicoNodeBGPStatus,
    CalicoNodePeer,
    NodeStatusClass,
)
from calico_nodestatus.bird.types import RouteStats
from calico_nodestatus.collect.gather import CollectionResult
from calico_nodestatus.collect.sections import peer_ip
from calico_nodestatus.metrics.catalogue import COLLECTION_DURATION_BUCKETS

IP_VERSIONS = (4, 6)

_TIME_OF_DAY = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2}))?$")


def state_age_seconds(since: str | None, now_local: datetime) -> float | None:
    """Seconds since a BIRD ``since`` text, or None when it is not a BIRD time.

    BIRD prints local time without a zone: ``HH:MM:SS[.fff]`` for changes within 20 hours (today,
    or yesterday when later than now), else ``YYYY-MM-DD`` (counted from that midnight, so a lower
    bound). ``now_local`` is the naive local time of the same host."""
    if not since:
        return None
    if match := _TIME_OF_DAY.match(since):
        hour, minute, second, fraction = match.groups()
        if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
            return None
        changed = now_local.replace(
            hour=int(hour),
            minute=int(minute),
            second=int(second),
            microsecond=int((fraction or "0").ljust(6, "0")),
        )
        if changed > now_local:
            changed -= timedelta(days=1)
        return (now_local - changed).total_seconds()
    if match := _DATE.match(since):
        try:
            changed = datetime(*(int(part) for part in match.groups() if part is not None))
        except ValueError:
            return None
        return max(0.0, (now_local - changed).total_seconds())
    return None


@dataclass(frozen=True, slots=True)
class DaemonView:
    ip_version: int
    up: bool
    ready: bool
    version: str | None
    router_id: str | None


@dataclass(frozen=True, slots=True)
class PeerView:
    ip_version: int
    peer_type: BGPPeerType
    peer_ip: str
    state: BGPSessionState | None
    state_changed_at: float | None  # unix time, from BIRD's `since`
    routes: RouteStats | None


@dataclass(frozen=True, slots=True)
class ObjectView:
    """One CalicoNodeStatus object the agent reports for; times are unix time."""

    name: str
    update_period_seconds: int
    last_write: float | None = None
    last_refresh: float | None = None  # written, or found already current
    routes_omitted: int = 0


@dataclass(frozen=True, slots=True)
class AgentView:
    """The agent's own bookkeeping as the exporter needs it (read from the agent at scrape time)."""

    collections: int = 0  # attempted, failed ones included
    writes: int = 0  # attempted: written, conflicts and errors
    write_conflicts: int = 0
    write_errors: int = 0
    objects: tuple[ObjectView, ...] = ()
    liveness: float | None = None  # unix time of the last heartbeat
    liveness_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class HistogramView:
    bucket_counts: tuple[int, ...]  # per bound of COLLECTION_DURATION_BUCKETS, not cumulative
    overflow: int  # observations above the last bound
    total: float

    def observe(self, seconds: float) -> HistogramView:
        counts = list(self.bucket_counts)
        for index, bound in enumerate(COLLECTION_DURATION_BUCKETS):
            if seconds <= bound:
                counts[index] += 1
                return replace(self, bucket_counts=tuple(counts), total=self.total + seconds)
        return replace(self, overflow=self.overflow + 1, total=self.total + seconds)


EMPTY_HISTOGRAM = HistogramView((0,) * len(COLLECTION_DURATION_BUCKETS), 0, 0.0)


@dataclass(frozen=True, slots=True)
class MetricsView:
    """An immutable copy of everything a scrape needs."""

    node: str
    daemons: tuple[DaemonView, ...] = ()
    peers: tuple[PeerView, ...] | None = None  # None until the BGP class is collected
    route_counts: Mapping[tuple[int, str, str], int] | None = None  # (ip_version, type, source) -> n
    collection_errors: Mapping[int, int] = field(default_factory=dict)
    last_collection_success: float | None = None
    durations: Mapping[str, HistogramView] = field(default_factory=dict)  # class -> histogram
    flaps: Mapping[tuple[int, BGPPeerType], int] = field(default_factory=dict)


def _daemons(
    agent: CalicoNodeAgentStatus | None,
    family_errors: Mapping[int, str],
    previous: Iterable[DaemonView],
) -> tuple[DaemonView, ...]:
    known = {daemon.ip_version: daemon for daemon in previous}
    for ip_version in IP_VERSIONS:
        status: BGPDaemonStatus | None = None
        if agent is not None:
            status = agent.bird_v4 if ip_version == 4 else agent.bird_v6
            if status == BGPDaemonStatus():
                status = None  # family not collected or not running
        before = known.get(ip_version)
        up = ip_version not in family_errors
        if status is not None:
            known[ip_version] = DaemonView(
                ip_version, up, status.state is BGPDaemonState.READY, status.version, status.router_id
            )
        elif not up:  # BIRD did not answer: neither up nor ready, whatever it said before
            known[ip_version] = DaemonView(
                ip_version, False, False, before and before.version, before and before.router_id
            )
        elif before is not None:
            known[ip_version] = replace(before, up=True)
    return tuple(known[v] for v in sorted(known))


def _peers(
    bgp: CalicoNodeBGPStatus, peer_routes: Mapping[tuple[int, str], RouteStats], at: datetime
) -> tuple[PeerView, ...]:
    now_local = at.astimezone().replace(tzinfo=None)

    def views(ip_version: int, peers: list[CalicoNodePeer]) -> Iterable[PeerView]:
        for peer in peers:
            if peer.peer_ip is None or peer.type is None:
                continue
            age = state_age_seconds(peer.since, now_local)
            yield PeerView(
                ip_version,
                peer.type,
                peer.peer_ip,
                peer.state,
                None if age is None else at.timestamp() - age,
                peer_routes.get((ip_version, peer.peer_ip)),
            )

    return (*views(4, bgp.peers_v4), *views(6, bgp.peers_v6))


def _route_counts(result: CollectionResult) -> dict[tuple[int, str, str], int]:
    """Every route BIRD listed (not only those kept in status), by family, FIB/RIB and source."""
    return {
        (family, kind, source): count
        for family, tallies in result.route_tallies.items()
        for source, tally in tallies.items()
        for kind, count in (("FIB", tally.fib), ("RIB", tally.rib))
    }


def _peer_routes(result: CollectionResult) -> dict[tuple[int, str], RouteStats]:
    return {
        (family, address): details.routes
        for family, protocols in result.protocols.items()
        for details in protocols
        if details.routes is not None and (address := peer_ip(details)) is not None
    }


def _flaps(
    before: tuple[PeerView, ...] | None,
    after: tuple[PeerView, ...],
    previous_collection: float | None,
    counted: Mapping[tuple[int, BGPPeerType], int],
) -> dict[tuple[int, BGPPeerType], int]:
    """A flap: a session that was Established and is not, or was re-established since last time."""
    flaps = dict(counted)
    previous = {(p.ip_version, p.peer_type, p.peer_ip): p for p in before or ()}
    for peer in after:
        old = previous.get((peer.ip_version, peer.peer_type, peer.peer_ip))
        if old is None or old.state is not BGPSessionState.ESTABLISHED:
            continue
        left = peer.state is not BGPSessionState.ESTABLISHED
        restarted = (
            not left
            and peer.state_changed_at is not None
            and previous_collection is not None
            and peer.state_changed_at > previous_collection
        )
        if left or restarted:
            key = (peer.ip_version, peer.peer_type)
            flaps[key] = flaps.get(key, 0) + 1
    return flaps


class MetricsState:
    """The agent's metrics, updated by the agent, read by scrapes. Thread-safe."""

    def __init__(self, node: str) -> None:
        self._lock = threading.Lock()
        self._view = MetricsView(node=node)
        self._bgp_collected_at: float | None = None  # the previous collection that included BGP

    def view(self) -> MetricsView:
        with self._lock:
            return self._view

    def record_result(self, result: CollectionResult, at: datetime) -> None:
        """One finished ``collect.gather`` collection (what the agent's collection hook passes)."""
        status, classes = result.status, result.classes
        self.record_collection(
            at,
            agent=status.agent if NodeStatusClass.AGENT in classes else None,
            bgp=status.bgp if NodeStatusClass.BGP in classes else None,
            route_counts=_route_counts(result) if NodeStatusClass.ROUTES in classes else None,
            family_errors={family: str(error) for (family, _), error in result.errors.items()},
            durations={str(cls): seconds for cls, seconds in result.durations.items()},
            peer_routes=_peer_routes(result),
        )

    def record_collection(
        self,
        at: datetime,
        *,
        agent: CalicoNodeAgentStatus | None = None,
        bgp: CalicoNodeBGPStatus | None = None,
        route_counts: Mapping[tuple[int, str, str], int] | None = None,
        family_errors: Mapping[int, str] | None = None,
        durations: Mapping[str, float] | None = None,
        peer_routes: Mapping[tuple[int, str], RouteStats] | None = None,
    ) -> None:
        """One finished collection. ``at`` is timezone-aware; sections not collected are None;
        ``route_counts`` maps (ip_version, "FIB"/"RIB", source type or "Other") to the number of
        routes in BIRD (all of them, not only those kept in status); ``durations`` maps class names
        (Agent, BGP, Routes) to seconds; ``peer_routes`` maps (ip_version, peer_ip) to BIRD's
        per-protocol route counters."""
        errors = family_errors or {}
        stamp = at.timestamp()
        with self._lock:
            view = self._view
            peers = view.peers
            flaps = view.flaps
            if bgp is not None:
                peers = _peers(bgp, peer_routes or {}, at)
                flaps = _flaps(view.peers, peers, self._bgp_collected_at, view.flaps)
                for peer in peers:  # every (family, peer type) seen gets a series, 0 until it flaps
                    flaps.setdefault((peer.ip_version, peer.peer_type), 0)
                self._bgp_collected_at = stamp
            histograms = dict(view.durations)
            classes = {str(cls) for cls in NodeStatusClass}
            for cls, seconds in (durations or {}).items():
                if cls in classes:  # other keys would be unbounded label values
                    histograms[cls] = histograms.get(cls, EMPTY_HISTOGRAM).observe(seconds)
            collection_errors = dict(view.collection_errors)
            for ip_version in errors:
                collection_errors[ip_version] = collection_errors.get(ip_version, 0) + 1
            self._view = replace(
                view,
                daemons=_daemons(agent, errors, view.daemons),
                peers=peers,
                flaps=flaps,
                route_counts=dict(route_counts) if route_counts is not None else view.route_counts,
                collection_errors=collection_errors,
                last_collection_success=stamp if not errors else view.last_collection_success,
                durations=histograms,
            )

    def record_collection_failure(self, ip_versions: Iterable[int] = IP_VERSIONS) -> None:
        """A collection that produced nothing (timeout, crash): every family counts as failed."""
        with self._lock:
            view = self._view
            errors = dict(view.collection_errors)
            for ip_version in ip_versions:
                errors[ip_version] = errors.get(ip_version, 0) + 1
            self._view = replace(view, collection_errors=errors)
