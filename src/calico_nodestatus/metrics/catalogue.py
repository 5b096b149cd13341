"""The single source of metric names: what this agent exports, and the Felix metrics the monitoring
bundle queries. Exporter, alert rules, dashboard and docs all take their names from here.

Conventions: prefix ``calico_nodestatus_``, base units (seconds), counters end in ``_total``,
the IP family is label ``ip_version`` with values ``4``/``6`` (the iptables-style values Felix uses),
and every series carries ``node`` (the Calico node name) so alerts group by node without relabelling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PREFIX = "calico_nodestatus_"
DEFAULT_METRICS_PORT = 9097
DEFAULT_METRICS_HOST = "0.0.0.0"  # noqa: S104 - a node exporter is scraped from other hosts
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

# Seconds; spans a sub-millisecond `show status` up to a slow full-table `show route`.
COLLECTION_DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class MetricType(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    INFO = "info"  # exposed as a gauge fixed at 1, data in labels


def _series_names(name: str, type_: MetricType) -> tuple[str, ...]:
    """Every sample name a scrape can contain for a family of this name and type."""
    if type_ is MetricType.HISTOGRAM:
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    if type_ is MetricType.SUMMARY:
        return (name, f"{name}_sum", f"{name}_count")
    return (name,)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. ``name`` is the exposed family name (counters include ``_total``)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...]
    per_peer: bool = False  # subject to the cardinality rule (explicit peers only unless opted in)

    def series_names(self) -> tuple[str, ...]:
        return _series_names(self.name, self.type)


_FAMILY = ("node", "ip_version")
_PEER = (*_FAMILY, "peer_type", "peer_ip")


def _spec(
    suffix: str, type_: MetricType, help_: str, labels: tuple[str, ...], per_peer: bool = False
) -> MetricSpec:
    return MetricSpec(PREFIX + suffix, type_, help_, labels, per_peer)


BUILD_INFO = _spec(
    "build_info", MetricType.INFO, "Agent build information; always 1.", ("node", "version", "python_version")
)
BIRD_UP = _spec(
    "bird_up",
    MetricType.GAUGE,
    "1 if the BIRD control socket for this IP family answered during the last collection, else 0.",
    _FAMILY,
)
BIRD_READY = _spec(
    "bird_ready",
    MetricType.GAUGE,
    "1 if BIRD reported itself up and running (status.agent state Ready) in the last collection, else 0.",
    _FAMILY,
)
BIRD_INFO = _spec(
    "bird_info",
    MetricType.INFO,
    "BIRD daemon version and router ID for this IP family; always 1.",
    (*_FAMILY, "version", "router_id"),
)
BGP_SESSIONS_ESTABLISHED = _spec(
    "bgp_sessions_established",
    MetricType.GAUGE,
    "BGP sessions in state Established, by IP family and peer type.",
    (*_FAMILY, "peer_type"),
)
BGP_SESSIONS_NOT_ESTABLISHED = _spec(
    "bgp_sessions_not_established",
    MetricType.GAUGE,
    "BGP sessions configured but not Established, by IP family and peer type.",
    (*_FAMILY, "peer_type"),
)
BGP_SESSION_FLAPS = _spec(
    "bgp_session_flaps_total",
    MetricType.COUNTER,
    "Times a BGP session was seen leaving Established (or re-established between two collections).",
    (*_FAMILY, "peer_type"),
)
BGP_SESSION_STATE = _spec(
    "bgp_session_state",
    MetricType.GAUGE,
    "BGP session state as a state set: 1 for the current state, 0 for the others "
    "(all 0 while the state is unknown).",
    (*_PEER, "state"),
    per_peer=True,
)
BGP_SESSION_STATE_AGE = _spec(
    "bgp_session_state_age_seconds",
    MetricType.GAUGE,
    "Seconds since the BGP session last changed state, as reported by BIRD.",
    _PEER,
    per_peer=True,
)
BGP_PEER_IMPORTED_ROUTES = _spec(
    "bgp_peer_imported_routes",
    MetricType.GAUGE,
    "Routes imported from the peer (BIRD `show protocols all`).",
    _PEER,
    per_peer=True,
)
BGP_PEER_EXPORTED_ROUTES = _spec(
    "bgp_peer_exported_routes",
    MetricType.GAUGE,
    "Routes exported to the peer (BIRD `show protocols all`).",
    _PEER,
    per_peer=True,
)
BGP_PEER_PREFERRED_ROUTES = _spec(
    "bgp_peer_preferred_routes",
    MetricType.GAUGE,
    "Routes from the peer that BIRD selected as best (BIRD `show protocols all`).",
    _PEER,
    per_peer=True,
)
ROUTES = _spec(
    "routes",
    MetricType.GAUGE,
    "Routes in BIRD's table by IP family, FIB (selected) or RIB (other), and where they were learned.",
    (*_FAMILY, "type", "source_type"),
)
COLLECTION_DURATION = _spec(
    "collection_duration_seconds",
    MetricType.HISTOGRAM,
    "Time taken to collect one status class from BIRD.",
    ("node", "class"),
)
COLLECTIONS = _spec("collections_total", MetricType.COUNTER, "Collections from BIRD attempted.", ("node",))
COLLECTION_ERRORS = _spec(
    "collection_errors_total",
    MetricType.COUNTER,
    "Collections in which an IP family failed (socket, timeout or parse error).",
    _FAMILY,
)
LAST_COLLECTION_SUCCESS = _spec(
    "last_collection_success_timestamp_seconds",
    MetricType.GAUGE,
    "Unix time of the last collection in which every IP family succeeded.",
    ("node",),
)
DATASTORE_WRITES = _spec(
    "datastore_writes_total", MetricType.COUNTER, "CalicoNodeStatus status writes attempted.", ("node",)
)
DATASTORE_WRITE_CONFLICTS = _spec(
    "datastore_write_conflicts_total",
    MetricType.COUNTER,
    "Status writes rejected because the object changed meanwhile (stale resourceVersion).",
    ("node",),
)
DATASTORE_WRITE_ERRORS = _spec(
    "datastore_write_errors_total",
    MetricType.COUNTER,
    "Status writes that failed for any reason other than a conflict.",
    ("node",),
)
STATUS_LAST_WRITE = _spec(
    "status_last_write_timestamp_seconds",
    MetricType.GAUGE,
    "Unix time of the last successful status write of this CalicoNodeStatus.",
    ("node", "name"),
)
STATUS_LAST_REFRESH = _spec(
    "status_last_refresh_timestamp_seconds",
    MetricType.GAUGE,
    "Unix time this CalicoNodeStatus was last confirmed current: written, or found unchanged.",
    ("node", "name"),
)
STATUS_UPDATE_PERIOD = _spec(
    "status_update_period_seconds",
    MetricType.GAUGE,
    "spec.updatePeriodSeconds of this CalicoNodeStatus (0 = report once).",
    ("node", "name"),
)
STATUS_ROUTES_OMITTED = _spec(
    "status_routes_omitted",
    MetricType.GAUGE,
    "Routes left out of the last status write of this CalicoNodeStatus to keep the object small.",
    ("node", "name"),
)
AGENT_LIVENESS = _spec(
    "agent_liveness_timestamp_seconds",
    MetricType.GAUGE,
    "Unix time the agent's main loop last reported itself alive.",
    ("node",),
)
AGENT_LIVENESS_TTL = _spec(
    "agent_liveness_ttl_seconds",
    MetricType.GAUGE,
    "How old the liveness timestamp may get before the agent counts as not live.",
    ("node",),
)

AGENT_METRICS: tuple[MetricSpec, ...] = (
    BUILD_INFO,
    BIRD_UP,
    BIRD_READY,
    BIRD_INFO,
    BGP_SESSIONS_ESTABLISHED,
    BGP_SESSIONS_NOT_ESTABLISHED,
    BGP_SESSION_FLAPS,
    BGP_SESSION_STATE,
    BGP_SESSION_STATE_AGE,
    BGP_PEER_IMPORTED_ROUTES,
    BGP_PEER_EXPORTED_ROUTES,
    BGP_PEER_PREFERRED_ROUTES,
    ROUTES,
    COLLECTION_DURATION,
    COLLECTIONS,
    COLLECTION_ERRORS,
    LAST_COLLECTION_SUCCESS,
    DATASTORE_WRITES,
    DATASTORE_WRITE_CONFLICTS,
    DATASTORE_WRITE_ERRORS,
    STATUS_LAST_WRITE,
    STATUS_LAST_REFRESH,
    STATUS_UPDATE_PERIOD,
    STATUS_ROUTES_OMITTED,
    AGENT_LIVENESS,
    AGENT_LIVENESS_TTL,
)


@dataclass(frozen=True, slots=True)
class FelixMetric:
    """A Felix metric the bundle queries. Felix registers counters without ``_total``."""

    name: str
    type: MetricType
    in_seed: bool  # named by the monitoring seed document
    replaced_by: str | None = None  # the current upstream name when the seed's name was removed
    removed_upstream: bool = False

    def series_names(self) -> tuple[str, ...]:
        return _series_names(self.name, self.type)


_G, _C, _S = MetricType.GAUGE, MetricType.COUNTER, MetricType.SUMMARY

FELIX_METRICS: tuple[FelixMetric, ...] = (
    FelixMetric("felix_calc_graph_update_time_seconds", _S, True),
    FelixMetric("felix_cluster_num_hosts", _G, True),
    FelixMetric("felix_cluster_num_policies", _G, True),
    FelixMetric("felix_cluster_num_profiles", _G, True),
    FelixMetric("felix_exec_time_micros", _S, True),
    FelixMetric("felix_int_dataplane_addr_msg_batch_size", _S, True),
    FelixMetric("felix_int_dataplane_apply_time_seconds", _S, True),
    FelixMetric("felix_int_dataplane_failures", _C, True),
    FelixMetric("felix_int_dataplane_iface_msg_batch_size", _S, True),
    FelixMetric("felix_int_dataplane_msg_batch_size", _S, True),
    FelixMetric("felix_ipset_calls", _C, True),
    FelixMetric("felix_ipset_errors", _C, True),
    FelixMetric("felix_ipset_lines_executed", _C, True),
    FelixMetric("felix_iptables_lines_executed", _C, True),
    # Removed upstream with the iptables lock code; no successor (newer Felix takes no lock itself).
    FelixMetric("felix_iptables_lock_acquire_secs", _S, True, removed_upstream=True),
    FelixMetric("felix_iptables_restore_calls", _C, True),
    FelixMetric("felix_iptables_restore_errors", _C, True),
    FelixMetric("felix_iptables_save_calls", _C, True),
    FelixMetric("felix_iptables_save_errors", _C, True),
    FelixMetric("felix_log_errors", _C, True),
    FelixMetric(
        "felix_route_table_list_seconds",
        _S,
        True,
        replaced_by="felix_route_table_resync_seconds",
        removed_upstream=True,
    ),
    FelixMetric(
        "felix_route_table_per_iface_sync_seconds",
        _S,
        True,
        replaced_by="felix_route_table_partial_resync_seconds",
        removed_upstream=True,
    ),
    FelixMetric("felix_route_table_resync_seconds", _S, False),
    FelixMetric("felix_route_table_partial_resync_seconds", _S, False),
)


def known_series_names() -> frozenset[str]:
    """Every sample name the bundle may query: this agent's, Felix's, and Prometheus' own ``up``."""
    names: set[str] = {"up"}
    for spec in AGENT_METRICS:
        names.update(spec.series_names())
    for felix in FELIX_METRICS:
        names.update(felix.series_names())
    return frozenset(names)
