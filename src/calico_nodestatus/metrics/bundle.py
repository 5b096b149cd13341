"""The monitoring bundle in deploy/monitoring/: generated files from one source each.

- ``calico.rules.yaml`` (hand-written Prometheus rules) is the source of the alert rules;
  ``prometheusrule.yaml`` wraps the same groups in a ``monitoring.coreos.com/v1`` PrometheusRule.
- ``grafana-dashboard.json`` is built from the panel list below.
- ``prometheus-scrape.yaml`` holds the scrape jobs (Felix, kube-controllers, this agent).

``python -m calico_nodestatus.metrics.bundle deploy/monitoring`` regenerates them; a test checks the
committed files equal the generated ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from calico_nodestatus.metrics import catalogue as cat

RULES_FILE = "calico.rules.yaml"
PROMETHEUS_RULE_FILE = "prometheusrule.yaml"
DASHBOARD_FILE = "grafana-dashboard.json"
SCRAPE_FILE = "prometheus-scrape.yaml"

FELIX_METRICS_PORT = 9091
KUBE_CONTROLLERS_METRICS_PORT = 9094

NODE = 'node=~"$node"'


@dataclass(frozen=True, slots=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"


def _p(title: str, unit: str, *targets: tuple[str, str], kind: str = "timeseries") -> Panel:
    return Panel(title, tuple(Target(expr, legend) for expr, legend in targets), unit, kind)


BGP_PANELS: tuple[Panel, ...] = (
    _p(
        "BGP sessions per node",
        "short",
        (
            f"sum by (node, ip_version, peer_type) ({cat.BGP_SESSIONS_ESTABLISHED.name}{{{NODE}}})",
            "{{node}} v{{ip_version}} {{peer_type}} established",
        ),
        (
            f"sum by (node, ip_version, peer_type) ({cat.BGP_SESSIONS_NOT_ESTABLISHED.name}{{{NODE}}})",
            "{{node}} v{{ip_version}} {{peer_type}} not established",
        ),
        kind="table",
    ),
    _p(
        "Established sessions over time",
        "short",
        (f"sum by (node) ({cat.BGP_SESSIONS_ESTABLISHED.name}{{{NODE}}})", "{{node}}"),
    ),
    _p(
        "Session flaps",
        "short",
        (
            f"sum by (node, ip_version, peer_type) "
            f"(increase({cat.BGP_SESSION_FLAPS.name}{{{NODE}}}[$__rate_interval]))",
            "{{node}} v{{ip_version}} {{peer_type}}",
        ),
    ),
    _p(
        "Explicit peer session states",
        "short",
        (f"{cat.BGP_SESSION_STATE.name}{{{NODE}}} == 1", "{{node}} {{peer_ip}} {{state}}"),
        kind="table",
    ),
    _p(
        "Seconds in current session state",
        "s",
        (f"{cat.BGP_SESSION_STATE_AGE.name}{{{NODE}}}", "{{node}} {{peer_ip}}"),
    ),
    _p(
        "Route counts",
        "short",
        (
            f"sum by (node, ip_version, type) ({cat.ROUTES.name}{{{NODE}}})",
            "{{node}} v{{ip_version}} {{type}}",
        ),
    ),
    _p(
        "Routes per explicit peer",
        "short",
        (f"{cat.BGP_PEER_IMPORTED_ROUTES.name}{{{NODE}}}", "{{peer_ip}} imported"),
        (f"{cat.BGP_PEER_EXPORTED_ROUTES.name}{{{NODE}}}", "{{peer_ip}} exported"),
        (f"{cat.BGP_PEER_PREFERRED_ROUTES.name}{{{NODE}}}", "{{peer_ip}} preferred"),
    ),
    _p(
        "Collection latency",
        "s",
        *(
            (
                f"histogram_quantile({q}, sum by (le, class) "
                f"(rate({cat.COLLECTION_DURATION.name}_bucket{{{NODE}}}[$__rate_interval])))",
                f"{{{{class}}}} p{q[2:]}",
            )
            for q in ("0.5", "0.99")
        ),
    ),
    _p(
        "Collection errors",
        "ops",
        (
            f"sum by (node, ip_version) (rate({cat.COLLECTION_ERRORS.name}{{{NODE}}}[$__rate_interval]))",
            "{{node}} v{{ip_version}}",
        ),
    ),
    _p(
        "Agent health",
        "short",
        (f"min by (node) ({cat.BIRD_UP.name}{{{NODE}}})", "{{node}} BIRD up"),
        (f"min by (node) ({cat.BIRD_READY.name}{{{NODE}}})", "{{node}} BIRD ready"),
        (f'up{{job="calico-nodestatus", {NODE}}}', "{{node}} scrape up"),
    ),
    _p(
        "Agent freshness",
        "s",
        (f"time() - {cat.AGENT_LIVENESS.name}{{{NODE}}}", "{{node}} liveness age"),
        (f"time() - {cat.STATUS_LAST_REFRESH.name}{{{NODE}}}", "{{node}} {{name}} status age"),
        (f"time() - {cat.LAST_COLLECTION_SUCCESS.name}{{{NODE}}}", "{{node}} last good collection"),
    ),
    _p(
        "Datastore writes",
        "ops",
        *(
            (f"sum by (node) (rate({spec.name}{{{NODE}}}[$__rate_interval]))", f"{{{{node}}}} {legend}")
            for spec, legend in (
                (cat.DATASTORE_WRITES, "writes"),
                (cat.DATASTORE_WRITE_CONFLICTS, "conflicts"),
                (cat.DATASTORE_WRITE_ERRORS, "errors"),
            )
        ),
        (f"sum by (node) ({cat.STATUS_ROUTES_OMITTED.name}{{{NODE}}})", "{{node}} routes omitted"),
    ),
)


def _rates(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"sum by (instance) (rate({name}[$__rate_interval]))", f"{{{{instance}}}} {name}") for name in names
    )


def _p99(*exprs: str) -> tuple[tuple[str, str], ...]:
    return tuple((expr, f"{{{{instance}}}} {expr.split('{', 1)[0].lstrip('(')}") for expr in exprs)


FELIX_PANELS: tuple[Panel, ...] = (
    _p("Felix dataplane failures", "ops", *_rates("felix_int_dataplane_failures")),
    _p(
        "Felix ipset / iptables errors",
        "ops",
        *_rates(
            "felix_ipset_errors",
            "felix_iptables_restore_errors",
            "felix_iptables_save_errors",
            "felix_log_errors",
        ),
    ),
    _p(
        "Felix latency (p99)",
        "s",
        *_p99(
            'felix_calc_graph_update_time_seconds{quantile="0.99"}',
            'felix_int_dataplane_apply_time_seconds{quantile="0.99"}',
            'felix_iptables_lock_acquire_secs{quantile="0.99"}',
            '(felix_route_table_resync_seconds{quantile="0.99"} '
            'or felix_route_table_list_seconds{quantile="0.99"})',
            '(felix_route_table_partial_resync_seconds{quantile="0.99"} '
            'or felix_route_table_per_iface_sync_seconds{quantile="0.99"})',
        ),
    ),
    _p("Felix fork/exec time (p99)", "µs", *_p99('felix_exec_time_micros{quantile="0.99"}')),
    _p(
        "Felix batch sizes (p99)",
        "short",
        *_p99(
            'felix_int_dataplane_msg_batch_size{quantile="0.99"}',
            'felix_int_dataplane_iface_msg_batch_size{quantile="0.99"}',
            'felix_int_dataplane_addr_msg_batch_size{quantile="0.99"}',
        ),
    ),
    _p(
        "Felix traffic",
        "ops",
        *_rates(
            "felix_ipset_calls",
            "felix_ipset_lines_executed",
            "felix_iptables_lines_executed",
            "felix_iptables_restore_calls",
            "felix_iptables_save_calls",
        ),
    ),
    _p(
        "Cluster size (Felix view)",
        "short",
        *(
            (f"max({name})", name)
            for name in (
                "felix_cluster_num_hosts",
                "felix_cluster_num_policies",
                "felix_cluster_num_profiles",
            )
        ),
    ),
)


def dashboard_expressions() -> list[str]:
    return [target.expr for panel in (*BGP_PANELS, *FELIX_PANELS) for target in panel.targets]


def _panel_json(panel: Panel, panel_id: int, y: int, x: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "expr": target.expr,
                "legendFormat": target.legend,
                "instant": panel.kind == "table",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for index, target in enumerate(panel.targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row_title, row_panels in (("BGP (calico-nodestatus)", BGP_PANELS), ("Felix", FELIX_PANELS)):
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for index, panel in enumerate(row_panels):
            panels.append(_panel_json(panel, len(panels) + 1, y + 8 * (index // 2), 12 * (index % 2)))
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "uid": "calico-nodestatus",
        "title": "Calico BGP and Felix",
        "tags": ["calico", "bgp", "bird"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "node",
                    "type": "query",
                    "label": "Node",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({cat.BUILD_INFO.name}, node)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                },
            ]
        },
        "panels": panels,
    }


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The same rule groups as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "calico-nodestatus",
            "namespace": "calico-system",
            "labels": {"app.kubernetes.io/name": "calico-nodestatus", "role": "alert-rules"},
        },
        "spec": {"groups": rules["groups"]},
    }


def _pod_job(name: str, container: str, port: int, honor_labels: bool = False) -> dict[str, Any]:
    """Scrape every running pod whose container is ``container``, on ``port`` of the pod IP."""
    return {
        "job_name": name,
        "honor_labels": honor_labels,
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "regex": container, "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
            {
                "source_labels": ["__address__"],
                "regex": "([^:]+)(?::\\d+)?",
                "replacement": f"$1:{port}",
                "target_label": "__address__",
            },
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def scrape_config() -> dict[str, Any]:
    return {
        "scrape_configs": [
            _pod_job("calico-node", "calico-node", FELIX_METRICS_PORT),
            _pod_job("calico-kube-controllers", "calico-kube-controllers", KUBE_CONTROLLERS_METRICS_PORT),
            # The agent labels its series with its Calico node name; keep it over the pod's node.
            _pod_job("calico-nodestatus", "calico-nodestatus", cat.DEFAULT_METRICS_PORT, honor_labels=True),
        ]
    }


def render(directory: Path) -> dict[str, str]:
    """File name -> content of every generated file, from the rules source in ``directory``."""
    rules = yaml.safe_load((directory / RULES_FILE).read_text())
    header = f"# Generated by calico_nodestatus.metrics.bundle from {RULES_FILE}; do not edit.\n"
    return {
        PROMETHEUS_RULE_FILE: header + yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=1000),
        DASHBOARD_FILE: json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n",
        SCRAPE_FILE: (
            "# Generated by calico_nodestatus.metrics.bundle; do not edit.\n"
            "# Merge these jobs into prometheus.yml (Felix needs prometheusMetricsEnabled: true).\n"
            + yaml.safe_dump(scrape_config(), sort_keys=False, width=1000)
        ),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m calico_nodestatus.metrics.bundle DIRECTORY", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if not (directory / RULES_FILE).is_file():
        print(f"error: {directory / RULES_FILE}: rules source not found", file=sys.stderr)
        return 1
    for name, content in render(directory).items():
        (directory / name).write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
