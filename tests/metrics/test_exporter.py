"""The exporter over HTTP: state built from real BIRD transcripts (parsed by the real parsers and
collect's section builders), scraped through the real server, read back with the Prometheus parser."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from calico_nodestatus.agent.runner import AgentCounters, AgentSnapshot, ObjectReport
from calico_nodestatus.api import CalicoNodeAgentStatus, CalicoNodeBGPStatus, CalicoNodePeer
from calico_nodestatus.bird.parse import parse_protocols_all, parse_status, reply_lines
from calico_nodestatus.bird.types import ProtocolDetails, RouteStats
from calico_nodestatus.cli.agent import agent_view
from calico_nodestatus.collect.sections import (
    bgp_status,
    daemon_status,
    is_bgp_peer,
    is_ipv6_peer,
    peer_ip,
    peer_section,
)
from calico_nodestatus.metrics import catalogue as cat
from calico_nodestatus.metrics.exporter import ExporterOptions, MetricsServer, StatusCollector, build_registry
from calico_nodestatus.metrics.state import AgentView, MetricsState, ObjectView, state_age_seconds

AT = datetime(2026, 11, 25, 0, 20, 0, tzinfo=UTC)


def _read(path: Path) -> list[str]:
    return reply_lines(path.read_bytes())


@pytest.fixture(scope="module")
def peertypes(bird_fixtures: Path) -> tuple[CalicoNodeAgentStatus, CalicoNodeBGPStatus, dict]:
    """BIRD 2.0.12 node with one Mesh, one Node_ and one Global_ peer per family, all Established."""
    scenario = bird_fixtures / "2.0.12" / "peertypes"
    daemon = daemon_status(parse_status(_read(scenario / "show_status.txt")))
    details: list[ProtocolDetails] = [
        d for d in parse_protocols_all(_read(scenario / "show_protocols_all.txt")) if is_bgp_peer(d)
    ]
    v4 = peer_section(d for d in details if not is_ipv6_peer(d))
    v6 = peer_section(d for d in details if is_ipv6_peer(d))
    bgp = bgp_status(v4, v6)
    routes = {(6 if is_ipv6_peer(d) else 4, peer_ip(d)): d.routes for d in details if d.routes is not None}
    return CalicoNodeAgentStatus(bird_v4=daemon, bird_v6=daemon), bgp, routes


def _state(peertypes: tuple) -> MetricsState:
    agent, bgp, routes = peertypes
    state = MetricsState("n1")
    state.record_collection(
        AT,
        agent=agent,
        bgp=bgp,
        peer_routes=routes,
        route_counts={(4, "FIB", "BGPPeer"): 4, (4, "FIB", "NodeMesh"): 1, (4, "RIB", "BGPPeer"): 2},
        durations={"Agent": 0.0004, "BGP": 0.003, "Routes": 0.2},
    )
    return state


AGENT_VIEW = AgentView(
    collections=1,
    writes=1,
    objects=(ObjectView("n1-status", 30, AT.timestamp(), AT.timestamp()),),
    liveness=AT.timestamp(),
    liveness_ttl=15.0,
)


@pytest.fixture
def server(peertypes: tuple) -> Iterator[MetricsServer]:
    registry = build_registry(_state(peertypes), agent=lambda: AGENT_VIEW)
    with MetricsServer(registry, host="127.0.0.1", port=0) as running:
        yield running


def _get(server: MetricsServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _values(samples: list[Sample], metric: str, **labels: str) -> list[float]:
    return [
        s.value for s in samples if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_scrape_serves_the_state_from_real_transcripts(server: MetricsServer, peertypes: tuple) -> None:
    status, content_type, body = _get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = _samples(body)
    assert _values(samples, cat.BIRD_UP.name, ip_version="4") == [1.0]
    assert _values(samples, cat.BIRD_READY.name, ip_version="6") == [1.0]
    [info] = [s for s in samples if s.name == cat.BIRD_INFO.name and s.labels["ip_version"] == "4"]
    assert (info.labels["version"], info.labels["router_id"]) == ("2.0.12", "198.18.0.1")
    for peer_type in ("NodeMesh", "NodePeer", "GlobalPeer"):
        v6 = {"ip_version": "6", "peer_type": peer_type}
        assert _values(samples, cat.BGP_SESSIONS_ESTABLISHED.name, **v6) == [1.0]
        assert _values(samples, cat.BGP_SESSIONS_NOT_ESTABLISHED.name, **v6) == [0.0]
    # The Global_ peer's counters from `show protocols all`: 2 imported, 2 exported, 1 preferred.
    global_v4 = {"ip_version": "4", "peer_type": "GlobalPeer", "peer_ip": "198.18.0.4"}
    assert _values(samples, cat.BGP_PEER_IMPORTED_ROUTES.name, **global_v4) == [2.0]
    assert _values(samples, cat.BGP_PEER_EXPORTED_ROUTES.name, **global_v4) == [2.0]
    assert _values(samples, cat.BGP_PEER_PREFERRED_ROUTES.name, **global_v4) == [1.0]
    assert _values(samples, cat.BGP_SESSION_STATE.name, state="Established", **global_v4) == [1.0]
    assert sum(_values(samples, cat.BGP_SESSION_STATE.name, **global_v4)) == 1.0
    assert sum(_values(samples, cat.ROUTES.name, ip_version="4", type="FIB")) == 5.0
    routes_class = {"class": "Routes"}
    histogram = cat.COLLECTION_DURATION.name
    assert _values(samples, histogram + "_count", **routes_class) == [1.0]
    assert _values(samples, histogram + "_bucket", le="0.1", **routes_class) == [0.0]
    assert _values(samples, histogram + "_bucket", le="0.25", **routes_class) == [1.0]
    assert _values(samples, cat.STATUS_LAST_WRITE.name, name="n1-status") == [AT.timestamp()]
    assert _values(samples, cat.DATASTORE_WRITES.name) == [1.0]
    assert {s.labels["node"] for s in samples} == {"n1"}  # every sample, and there are some


def test_mesh_peers_get_per_peer_series_only_when_opted_in(peertypes: tuple) -> None:
    state = _state(peertypes)

    def per_peer_types(options: ExporterOptions) -> set[str]:
        families = StatusCollector(state, options).collect()
        return {
            s.labels["peer_type"] for f in families if f.name == cat.BGP_SESSION_STATE.name for s in f.samples
        }

    assert per_peer_types(ExporterOptions()) == {"NodePeer", "GlobalPeer"}
    assert per_peer_types(ExporterOptions(mesh_peer_series=True)) == {"NodeMesh", "NodePeer", "GlobalPeer"}


def test_health_path_and_unknown_paths(server: MetricsServer) -> None:
    assert _get(server, "/healthz")[::2] == (200, "ok\n")
    status, _, body = _get(server, "/metrics/extra")
    assert status == 404
    assert "/metrics" in body
    assert _get(server, "/")[0] == 404


def test_describe_and_scrape_only_use_catalogue_names(peertypes: tuple) -> None:
    collector = StatusCollector(_state(peertypes), agent=lambda: AGENT_VIEW)
    described = {family.name for family in collector.describe()}
    assert described == {spec.name.removesuffix("_total") for spec in cat.AGENT_METRICS}
    exposed = {s.name for family in collector.collect() for s in family.samples}
    assert exposed <= cat.known_series_names()


def test_a_stale_session_age_grows_between_scrapes(peertypes: tuple) -> None:
    state = _state(peertypes)
    clock = [AT.timestamp()]
    collector = StatusCollector(state, clock=lambda: clock[0])

    def age() -> float:
        [family] = [f for f in collector.collect() if f.name == cat.BGP_SESSION_STATE_AGE.name]
        return next(s.value for s in family.samples if s.labels["peer_ip"] == "198.18.0.3")

    first = age()
    clock[0] += 60
    assert age() == pytest.approx(first + 60)


def _peer(state: str, since: str) -> CalicoNodeBGPStatus:
    return CalicoNodeBGPStatus(
        peers_v4=[CalicoNodePeer(peer_ip="198.18.0.3", type="NodePeer", state=state, since=since)]
    )


def _flaps(state: MetricsState) -> float:
    family_name = cat.BGP_SESSION_FLAPS.name.removesuffix("_total")
    [family] = [f for f in StatusCollector(state).collect() if f.name == family_name]
    return sum(s.value for s in family.samples if s.name == cat.BGP_SESSION_FLAPS.name)


def test_flaps_count_sessions_leaving_or_restarting_established() -> None:
    state = MetricsState("n1")
    local = AT.astimezone()
    at = [AT + timedelta(minutes=m) for m in range(4)]
    hhmmss = [(local + timedelta(minutes=m)).strftime("%H:%M:%S") for m in range(4)]
    state.record_collection(at[0], bgp=_peer("Established", hhmmss[0]))
    assert _flaps(state) == 0
    state.record_collection(at[1], bgp=_peer("Active", hhmmss[1]))
    assert _flaps(state) == 1
    state.record_collection(at[2], bgp=_peer("Established", hhmmss[2]))
    assert _flaps(state) == 1
    # Still Established, but BIRD says it changed after the previous collection: it bounced.
    state.record_collection(at[3], bgp=_peer("Established", hhmmss[3]))
    assert _flaps(state) == 2
    # A collection without the BGP class changes nothing.
    state.record_collection(at[3] + timedelta(seconds=5))
    assert _flaps(state) == 2


def test_family_errors_mark_bird_down_and_count_errors() -> None:
    state = MetricsState("n1")
    agent = CalicoNodeAgentStatus(bird_v4={"state": "Ready", "version": "2.0.12", "routerID": "198.18.0.1"})
    state.record_collection(AT, agent=agent)
    state.record_collection(AT + timedelta(seconds=10), family_errors={4: "connection refused"})
    state.record_collection_failure()
    view = state.view()
    [daemon] = view.daemons
    assert (daemon.up, daemon.ready, daemon.version) == (False, False, "2.0.12")
    assert view.collection_errors == {4: 2, 6: 1}
    assert view.last_collection_success == AT.timestamp()
    state.record_collection(AT + timedelta(seconds=20), durations={"BGP": 0.01})
    assert state.view().daemons[0].up is True


def _snapshot(**changes: object) -> AgentSnapshot:
    fields: dict = {
        "node": "n1",
        "objects": ("a", "b"),
        "collected": None,
        "collected_at": None,
        "last_write_at": AT,
        "datastore_ok": True,
        "datastore_reason": "",
        "routes_omitted": {"b": {"v4": 10, "v6": 2}},
        "counters": AgentCounters(
            collections=5,
            collection_failures=2,
            writes=3,
            write_conflicts=1,
            write_errors=4,
            writes_skipped_unchanged=9,
        ),
        "object_reports": {
            "a": ObjectReport(60, None, AT + timedelta(seconds=1)),
            "b": ObjectReport(0, AT, AT),
        },
        "last_heartbeat_at": AT,
    }
    return AgentSnapshot(**{**fields, **changes})


def _agent_samples(source: AgentView | None) -> list[Sample]:
    collector = StatusCollector(MetricsState("n1"), agent=None if source is None else lambda: source)
    return [s for family in collector.collect() for s in family.samples]


def test_agent_series_come_from_the_agent_snapshot() -> None:
    """Counters are the agent's: attempts are successes plus failures; skipped writes are none."""
    samples = _agent_samples(agent_view(_snapshot(), 15.0))
    assert _values(samples, cat.COLLECTIONS.name) == [7.0]
    assert _values(samples, cat.DATASTORE_WRITES.name) == [8.0]
    assert _values(samples, cat.DATASTORE_WRITE_CONFLICTS.name) == [1.0]
    assert _values(samples, cat.DATASTORE_WRITE_ERRORS.name) == [4.0]
    assert _values(samples, cat.STATUS_LAST_WRITE.name, name="a") == []  # never written
    assert _values(samples, cat.STATUS_LAST_REFRESH.name, name="a") == [AT.timestamp() + 1]
    assert _values(samples, cat.STATUS_UPDATE_PERIOD.name, name="a") == [60.0]
    assert _values(samples, cat.STATUS_ROUTES_OMITTED.name, name="b") == [12.0]
    assert _values(samples, cat.AGENT_LIVENESS.name) == [AT.timestamp()]
    assert _values(samples, cat.AGENT_LIVENESS_TTL.name) == [15.0]
    # Before the first heartbeat there is no liveness to report.
    quiet = _agent_samples(agent_view(_snapshot(last_heartbeat_at=None), 15.0))
    assert _values(quiet, cat.AGENT_LIVENESS.name) == []


def test_without_an_agent_its_series_are_absent() -> None:
    agent_names = {
        cat.COLLECTIONS.name,
        cat.DATASTORE_WRITES.name,
        cat.STATUS_UPDATE_PERIOD.name,
        cat.AGENT_LIVENESS.name,
    }
    assert not agent_names & {s.name for s in _agent_samples(None)}
    assert agent_names <= {s.name for s in _agent_samples(AGENT_VIEW)}


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("12:00:00", 3600.0),  # earlier today
        ("12:59:59.500", 0.5),
        ("14:00:00", 23 * 3600.0),  # later than now: yesterday
        ("2026-11-20", 5 * 86400 + 13 * 3600.0),  # date only: from that midnight
        ("2026-11-25 12:30:00", 1800.0),
        ("25:00:00", None),
        ("2026-02-30", None),
        ("soon", None),
        (None, None),
    ],
)
def test_state_age_of_bird_since_text(since: str | None, expected: float | None) -> None:
    assert state_age_seconds(since, datetime(2026, 11, 25, 13, 0, 0)) == expected


def test_route_stats_type_is_bird_s(peertypes: tuple) -> None:
    stats = peertypes[2]
    assert sorted(stats) == [
        (4, "198.18.0.2"), (4, "198.18.0.3"), (4, "198.18.0.4"),
        (6, "2001:db8::2"), (6, "2001:db8::3"), (6, "2001:db8::4"),
    ]  # fmt: skip
    assert {type(route_stats) for route_stats in stats.values()} == {RouteStats}
