# The PromQL in deploy/ (the Grafana dashboard's panel queries and the alert
# rules' expressions) held against what a scrape exports: every metric name
# an expression selects must be exported, every label it matches or groups
# by must be on the metrics it selects, and every label value it matches
# exactly must appear. `exported_names()` reads a scrape's text exposition;
# `check_expr()` asserts one expression against it. Used by
# tests/unit/test_deploy.py (against a collector with nothing connected) and
# tests/integration/test_metrics_dashboard.py (against a running proxy).
# A regex match, not a PromQL parser: selectors are `name{matchers}` of the
# proxy's own families (mysqlpool_*) and of the process/python collectors.
from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "mysqlpool-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yml"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus, not by the collector

SELECTOR = re.compile(r"\b((?:mysqlpool|process|python)_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")

Exported = dict[str, dict[str, set[str]]]  # sample name -> label -> values seen


def exported_names(text: str) -> Exported:
    """Every sample name of a text exposition, with the labels and values it carries."""
    out: Exported = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = out.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return out


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_exprs(yaml) -> list[str]:
    return [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in SELECTOR.findall(expr)}


def check_expr(expr: str, exported: Exported) -> None:
    selectors = SELECTOR.findall(expr)
    assert any(name.startswith("mysqlpool_") for name, _ in selectors), f"no mysqlpool metric in {expr!r}"
    labels_in_expr: set[str] = set()
    for name, matchers in selectors:
        assert name in exported, f"{name} is not exported (in {expr!r})"
        for label, op, value in _MATCHER.findall(matchers):
            if label in TARGET_LABELS:
                continue
            assert label in exported[name], f"{name} has no label {label!r}"
            if op in ("=", "!=") and "$" not in value:
                assert value in exported[name][label], f"{name}{{{label}={value!r}}} never appears"
        labels_in_expr |= set(exported[name])
    for group in _GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",") if g.strip()):
            assert label in labels_in_expr | TARGET_LABELS, f"grouping by unknown label {label!r} in {expr!r}"
