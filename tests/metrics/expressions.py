"""The monitoring bundle's PromQL as tests query it: alert rules, dashboard expressions with
Grafana's template variables filled in, and the metric names an expression reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from calico_nodestatus.metrics import bundle

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / bundle.RULES_FILE

# Template variables Grafana fills in, replaced by values Prometheus accepts.
GRAFANA_VARS = {"$__rate_interval": "5m", "$node": ".*"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC_LIKE = re.compile(r"\b((?:calico|felix)_[a-zA-Z0-9_]+)\b")


def rules() -> dict[str, Any]:
    return dict(yaml.safe_load(RULES.read_text()))


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rules()["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    exprs = []
    for template in bundle.dashboard_expressions():
        expr = template
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        exprs.append(expr)
    return exprs


def metric_names(expr: str) -> set[str]:
    """Names of Calico/Felix metrics an expression reads (label values are not names)."""
    return set(_METRIC_LIKE.findall(_STRINGS.sub('""', expr)))
