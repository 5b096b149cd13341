"""A real Prometheus server scraping a real agent in a BIRD lab.

The agent runs as ``python -m calico_nodestatus agent`` on node 1 of a private 3-node BIRD 2 lab
(embedded datastore in tmp, one CalicoNodeStatus created through the CLI); Prometheus (Debian
package) scrapes it every second and evaluates the shipped rules file every second. Then:

- every BGP alert expression evaluates without error and returns nothing on the healthy node,
  and every metric selector it is built from returns series (so "nothing" means "healthy", not
  "misspelt");
- every dashboard expression over our metrics returns series;
- stopping a peer's BIRD makes CalicoBGPSessionNotEstablished go pending for that peer (the real
  rule has ``for: 5m``, so pending is the state it must reach within seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.metrics.catalogue import AGENT_METRICS, PREFIX
from tests.metrics.expressions import RULES, alerts, dashboard_exprs, metric_names
from tests.plugins.lab import LabFactory

PROMETHEUS = shutil.which("prometheus")
JOB = "calico-nodestatus"  # the job name of deploy/monitoring's scrape config
SESSION_ALERT = "CalicoBGPSessionNotEstablished"

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if result := check():
                return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.2)


@contextlib.contextmanager
def _process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as reply:
            return reply.status == 200

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", (expr, answer)
        assert answer["data"]["resultType"] == "vector", expr
        return list(answer["data"]["result"])


def _scrape_ok(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        return b"calico_nodestatus_bgp_sessions_established{" in reply.read()


def _ours(expr: str) -> bool:
    """Reads this agent's metrics (Felix's are not in the lab)."""
    return PREFIX in expr or f'job="{JOB}"' in expr


def test_prometheus_scrapes_the_agent_and_the_session_alert_goes_pending(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(nodes=3, bird="2")
    node, peer = lab.node(1), lab.node(2)
    env = {**os.environ, "CALICO_NODESTATUS_DB": str(tmp_path / "status.db"), "DATASTORE_TYPE": "embedded"}
    manifest = tmp_path / "status.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "CalicoNodeStatus",
                "metadata": {"name": f"{node.name}-status"},
                "spec": {"node": node.name, "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 2},
            }
        )
    )
    cli = [sys.executable, "-m", "calico_nodestatus"]
    create = [*cli, "create", "-f", str(manifest)]
    created = subprocess.run(create, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert created.returncode == 0, created.stderr

    metrics_port, prometheus_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "honor_labels": True,
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"node": node.name}}
                        ],
                    }
                ],
            }
        )
    )
    agent_argv = [
        *cli, "--log-level", "info", "agent", "--node", node.name, "--bird-socket", str(node.socket_v4),
        "--heartbeat-seconds", "2", "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port),
        "--metrics-mesh-peers",
    ]  # fmt: skip
    assert PROMETHEUS is not None
    prometheus_argv = [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn",
    ]  # fmt: skip
    logs = [tmp_path / "agent.log", tmp_path / "prometheus.log"]
    api = PrometheusApi(prometheus_port)
    with _process(agent_argv, logs[0], env), _process(prometheus_argv, logs[1]):
        _wait("the agent's first collection on /metrics", lambda: _scrape_ok(metrics_port), 20, logs)
        _wait("Prometheus to be ready", api.ready, 20, logs)
        # Rates need two samples in their window, the refresh time one write.
        _wait(
            "two scrapes of collection latency and a status refresh",
            lambda: (
                api.query(f"count_over_time({PREFIX}collection_duration_seconds_count[30s]) >= 2")
                and api.query(f"{PREFIX}status_last_refresh_timestamp_seconds")
            ),
            20,
            logs,
        )

        # Healthy node: every BGP alert is quiet, and every metric it reads has series.
        bgp_alerts = {alert["alert"]: alert["expr"] for alert in alerts() if _ours(alert["expr"])}
        assert len(bgp_alerts) == 7, sorted(bgp_alerts)
        for name, expr in bgp_alerts.items():
            assert api.query(expr) == [], f"{name} fires on a healthy node"
            for selector in metric_names(expr):
                assert api.query(selector), f"{name}: {selector} has no series"
        # Every dashboard expression over our metrics shows data.
        exprs = [expr for expr in dashboard_exprs() if _ours(expr)]
        assert len(exprs) >= 20, exprs
        empty = [expr for expr in exprs if not api.query(expr)]
        assert empty == [], f"dashboard expressions without series: {empty}"
        # And every metric of the catalogue made it through (the healthy lab has them all).
        scraped = {series["metric"]["__name__"] for series in api.query(f'{{__name__=~"{PREFIX}.+"}}')}
        expected = {s for spec in AGENT_METRICS for s in spec.series_names()}
        assert expected <= scraped, sorted(expected - scraped)
        assert api.query(f'ALERTS{{alertname="{SESSION_ALERT}"}}') == []

        # A peer's BIRD stops: node 1's sessions to it leave Established and the alert goes pending.
        lab.bird_stop(peer.index)
        peer_ips = {str(peer.ipv4), str(peer.ipv6)}

        def pending() -> set[str]:
            series = api.query(f'ALERTS{{alertname="{SESSION_ALERT}", alertstate="pending"}}')
            return {s["metric"].get("peer_ip", "") for s in series if s["metric"]["node"] == node.name}

        _wait("the session alert to go pending for both sessions", lambda: peer_ips <= pending(), 20, logs)
        states = api.query(f'{PREFIX}bgp_session_state{{peer_ip="{peer.ipv4}", state="Established"}}')
        assert [s["value"][1] for s in states] == ["0"]
        assert api.query(f'ALERTS{{alertname="{SESSION_ALERT}", alertstate="firing"}}') == []  # for: 5m
