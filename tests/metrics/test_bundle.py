"""The monitoring bundle: rules check and unit-test with the real promtool, every alert is tested
firing and not firing, generated files are in sync, every expression parses and only uses known
metric names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from calico_nodestatus.metrics import bundle
from calico_nodestatus.metrics.catalogue import known_series_names
from tests.metrics.expressions import MONITORING, ROOT, alerts, dashboard_exprs, metric_names, rules

HERE = Path(__file__).parent
PROMTOOL = shutil.which("promtool")
RULE_TESTS = sorted(HERE.glob("*_rules_test.yaml"))

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def _promtool(*args: str, cwd: Path = HERE) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_rules_source_and_prometheus_rule_pass_promtool_check(tmp_path: Path) -> None:
    generated = yaml.safe_load((MONITORING / bundle.PROMETHEUS_RULE_FILE).read_text())
    assert generated["apiVersion"] == "monitoring.coreos.com/v1"
    assert generated["kind"] == "PrometheusRule"
    spec_file = tmp_path / "from-prometheusrule.yaml"
    spec_file.write_text(yaml.safe_dump({"groups": generated["spec"]["groups"]}))
    result = _promtool("check", "rules", str(MONITORING / bundle.RULES_FILE), str(spec_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests(test_file: Path) -> None:
    result = _promtool("test", "rules", test_file.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests bite: a rules file whose BGP session alert never fires fails them."""
    broken = rules()
    for group in broken["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "CalicoBGPSessionNotEstablished":
                rule["expr"] = "vector(1) < 0"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(broken))
    test = yaml.safe_load((HERE / "bgp_rules_test.yaml").read_text())
    test["rule_files"] = ["rules.yaml"]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = _promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "CalicoBGPSessionNotEstablished" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert len(names) == 18  # the 11 Felix alerts of the seed and our 7 BGP alerts
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_generated_files_match_their_sources() -> None:
    for name, content in bundle.render(MONITORING).items():
        assert (MONITORING / name).read_text() == content, (
            f"{name} is stale: run python -m calico_nodestatus.metrics.bundle deploy/monitoring"
        )


@needs_promtool
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{index}", "expr": expr} for index, expr in enumerate(exprs)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard.rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_expressions_use_only_catalogue_or_felix_metrics() -> None:
    known = known_series_names()
    exprs = [alert["expr"] for alert in alerts()] + dashboard_exprs()
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names <= known, f"unknown metric names {names - known} in {expr!r}"
        used |= names
    # Every metric the seed names is shown or alerted on, and the dashboard covers our metrics.
    assert {"felix_cluster_num_hosts", "felix_iptables_save_calls", "felix_exec_time_micros"} <= used
    assert "calico_nodestatus_bgp_session_flaps_total" in used


def test_name_check_rejects_an_unknown_metric() -> None:
    names = metric_names('rate(felix_made_up_total[5m]) + calico_nodestatus_routes{type="calico_x"}')
    assert names == {"felix_made_up_total", "calico_nodestatus_routes"}
    assert not names <= known_series_names()


def test_dashboard_has_the_requested_panels() -> None:
    dashboard = yaml.safe_load((MONITORING / bundle.DASHBOARD_FILE).read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "BGP sessions per node",
        "Established sessions over time",
        "Session flaps",
        "Route counts",
        "Collection latency",
        "Agent health",
        "Felix dataplane failures",
        "Felix ipset / iptables errors",
        "Felix latency (p99)",
        "Felix batch sizes (p99)",
        "Felix traffic",
    ):
        assert wanted in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_scrape_config_targets_felix_kube_controllers_and_agent() -> None:
    config = yaml.safe_load((MONITORING / bundle.SCRAPE_FILE).read_text())
    ports = {job["job_name"]: job["relabel_configs"][2]["replacement"] for job in config["scrape_configs"]}
    assert ports == {
        "calico-node": "$1:9091",
        "calico-kube-controllers": "$1:9094",
        "calico-nodestatus": "$1:9097",
    }


def test_bundle_cli_reports_a_missing_rules_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bundle.main([str(tmp_path)]) == 1
    assert "rules source not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_docs_list_every_metric_and_alert() -> None:
    from calico_nodestatus.metrics.catalogue import AGENT_METRICS

    docs = (ROOT / "docs" / "metrics.md").read_text()
    missing = [spec.name for spec in AGENT_METRICS if f"`{spec.name}`" not in docs]
    missing += [alert["alert"] for alert in alerts() if f"| {alert['alert']} |" not in docs]
    assert missing == []
