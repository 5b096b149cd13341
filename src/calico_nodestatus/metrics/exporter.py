"""The Prometheus exporter: a custom collector and a small HTTP server.

A scrape reads the collection history's latest immutable view (``MetricsState``, fed by the agent
after each collection) and the agent's own bookkeeping (an ``AgentView`` read from the agent's
in-memory snapshot), so it never blocks on BIRD or the datastore. The server answers ``/metrics``
and ``/healthz``; every other path is 404.
"""

from __future__ import annotations

import platform
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from calico_nodestatus import __version__
from calico_nodestatus.api import BGPPeerType, BGPSessionState
from calico_nodestatus.metrics import catalogue as cat
from calico_nodestatus.metrics.catalogue import MetricSpec, MetricType
from calico_nodestatus.metrics.state import IP_VERSIONS, AgentView, MetricsState, MetricsView, PeerView

# Reads the agent's counters, objects and liveness at scrape time; must not block.
AgentViewSource = Callable[[], AgentView]

_BUCKET_BOUNDS = (*(repr(float(b)) for b in cat.COLLECTION_DURATION_BUCKETS), "+Inf")


@dataclass(frozen=True, slots=True)
class ExporterOptions:
    # Per-peer series for NodeMesh peers: off by default because a full mesh makes them grow with
    # the square of the node count; explicit Node_/Global_ peers always get them.
    mesh_peer_series: bool = False


def _family(spec: MetricSpec) -> Metric:
    """An empty family for ``spec``; counters are named without ``_total`` (the client adds it)."""
    if spec.type is MetricType.COUNTER:
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=spec.labels)
    if spec.type is MetricType.HISTOGRAM:
        return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


class StatusCollector(Collector):
    """Builds every agent metric at scrape time from the state's latest view and, when given, the
    agent's view (without one, the agent's counter, object and liveness series are absent)."""

    def __init__(
        self,
        state: MetricsState,
        options: ExporterOptions = ExporterOptions(),
        clock: Callable[[], float] = time.time,
        agent: AgentViewSource | None = None,
    ) -> None:
        self._state = state
        self._options = options
        self._clock = clock
        self._agent = agent

    def describe(self) -> Iterator[Metric]:
        for spec in cat.AGENT_METRICS:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        view = self._state.view()
        families = {spec.name: _family(spec) for spec in cat.AGENT_METRICS}

        def add(spec: MetricSpec, labels: tuple[str, ...], value: float) -> None:
            families[spec.name].add_metric([view.node, *labels], value)  # type: ignore[attr-defined]

        add(cat.BUILD_INFO, (__version__, platform.python_version()), 1)
        self._daemons(view, add)
        self._sessions(view, add)
        for (ip_version, route_type, source), count in sorted((view.route_counts or {}).items()):
            add(cat.ROUTES, (str(ip_version), route_type, source), count)
        self._collection(view, families, add)
        if self._agent is not None:
            self._agent_series(self._agent(), add)
        yield from families.values()

    @staticmethod
    def _agent_series(agent: AgentView, add: Callable[[MetricSpec, tuple[str, ...], float], None]) -> None:
        add(cat.COLLECTIONS, (), agent.collections)
        add(cat.DATASTORE_WRITES, (), agent.writes)
        add(cat.DATASTORE_WRITE_CONFLICTS, (), agent.write_conflicts)
        add(cat.DATASTORE_WRITE_ERRORS, (), agent.write_errors)
        for obj in sorted(agent.objects, key=lambda o: o.name):
            add(cat.STATUS_UPDATE_PERIOD, (obj.name,), obj.update_period_seconds)
            add(cat.STATUS_ROUTES_OMITTED, (obj.name,), obj.routes_omitted)
            if obj.last_write is not None:
                add(cat.STATUS_LAST_WRITE, (obj.name,), obj.last_write)
            if obj.last_refresh is not None:
                add(cat.STATUS_LAST_REFRESH, (obj.name,), obj.last_refresh)
        if agent.liveness is not None and agent.liveness_ttl is not None:
            add(cat.AGENT_LIVENESS, (), agent.liveness)
            add(cat.AGENT_LIVENESS_TTL, (), agent.liveness_ttl)

    @staticmethod
    def _daemons(view: MetricsView, add: Callable[[MetricSpec, tuple[str, ...], float], None]) -> None:
        for daemon in view.daemons:
            family = str(daemon.ip_version)
            add(cat.BIRD_UP, (family,), daemon.up)
            add(cat.BIRD_READY, (family,), daemon.ready)
            if daemon.version is not None or daemon.router_id is not None:
                add(cat.BIRD_INFO, (family, daemon.version or "", daemon.router_id or ""), 1)

    def _sessions(self, view: MetricsView, add: Callable[[MetricSpec, tuple[str, ...], float], None]) -> None:
        for (ip_version, peer_type), flaps in sorted(view.flaps.items()):
            add(cat.BGP_SESSION_FLAPS, (str(ip_version), str(peer_type)), flaps)
        if view.peers is None:
            return
        now = self._clock()
        counts: dict[tuple[str, str], list[int]] = {}
        for peer in view.peers:
            tally = counts.setdefault((str(peer.ip_version), str(peer.peer_type)), [0, 0])
            tally[peer.state is not BGPSessionState.ESTABLISHED] += 1
            if peer.peer_type is not BGPPeerType.NODE_MESH or self._options.mesh_peer_series:
                self._peer(peer, now, add)
        for labels, (established, not_established) in sorted(counts.items()):
            add(cat.BGP_SESSIONS_ESTABLISHED, labels, established)
            add(cat.BGP_SESSIONS_NOT_ESTABLISHED, labels, not_established)

    @staticmethod
    def _peer(peer: PeerView, now: float, add: Callable[[MetricSpec, tuple[str, ...], float], None]) -> None:
        labels = (str(peer.ip_version), str(peer.peer_type), peer.peer_ip)
        for state in BGPSessionState:
            add(cat.BGP_SESSION_STATE, (*labels, str(state)), peer.state is state)
        if peer.state_changed_at is not None:
            add(cat.BGP_SESSION_STATE_AGE, labels, max(0.0, now - peer.state_changed_at))
        if peer.routes is not None:
            add(cat.BGP_PEER_IMPORTED_ROUTES, labels, peer.routes.imported)
            add(cat.BGP_PEER_EXPORTED_ROUTES, labels, peer.routes.exported)
            add(cat.BGP_PEER_PREFERRED_ROUTES, labels, peer.routes.preferred)

    @staticmethod
    def _collection(
        view: MetricsView,
        families: dict[str, Metric],
        add: Callable[[MetricSpec, tuple[str, ...], float], None],
    ) -> None:
        # Both families from the start: a counter born at its first error hides that first increase.
        for ip_version in sorted({*IP_VERSIONS, *view.collection_errors}):
            add(cat.COLLECTION_ERRORS, (str(ip_version),), view.collection_errors.get(ip_version, 0))
        if view.last_collection_success is not None:
            add(cat.LAST_COLLECTION_SUCCESS, (), view.last_collection_success)
        histogram = families[cat.COLLECTION_DURATION.name]
        for cls, observed in sorted(view.durations.items()):
            cumulative, buckets = 0, []
            per_bucket = (*observed.bucket_counts, observed.overflow)
            for bound, count in zip(_BUCKET_BOUNDS, per_bucket, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric([view.node, cls], buckets, observed.total)  # type: ignore[attr-defined]


def build_registry(
    state: MetricsState,
    options: ExporterOptions = ExporterOptions(),
    agent: AgentViewSource | None = None,
) -> CollectorRegistry:
    """A registry holding only this agent's metrics (no process/platform collectors)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(state, options, agent=agent))
    return registry


# A client that connects and sends nothing holds the serving thread this long at most.
REQUEST_TIMEOUT_S = 5.0


def _handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == cat.METRICS_PATH:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encoder(registry))
            elif path == cat.HEALTH_PATH:
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found; try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds would flood stderr; stay quiet."""

    return Handler


class MetricsServer:
    """Serves a registry on host:port from one daemon thread, which answers the requests one
    after the other (a scrape takes about a millisecond; a thread per request cost a thread
    start every scrape). Port 0 picks a free port."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = cat.DEFAULT_METRICS_HOST,
        port: int = cat.DEFAULT_METRICS_PORT,
    ) -> None:
        self._server = HTTPServer((host, port), _handler(registry))
        # serve_forever() wakes every 0.5 s to look for shutdown (≈ 0.02 % of a core for an idle
        # agent); _serve blocks until a client connects or stop() writes to this pair instead.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_reader in ready:
                    return
                self._server.handle_request()  # the listening socket is readable: accepts at once

    def stop(self) -> None:
        if self._thread.is_alive():
            self._wake_writer.send(b"x")
            self._thread.join()
        self._server.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
