"""Extract metric names from PromQL expressions, and the expressions from our monitoring files.

No PromQL parser ships for Python, so `metric_names` strips what cannot be a
metric name (strings, label matchers, range and subquery brackets, grouping
label lists, Grafana variables, numbers and durations) and then keeps every
identifier that is neither a function call nor a keyword. The expression syntax
itself is checked separately by `promtool check rules`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = REPO_ROOT / "monitoring"
DASHBOARD_PATH = MONITORING_DIR / "grafana" / "dashboards" / "mllm-classify.json"
ALERTS_PATH = MONITORING_DIR / "alerts.yml"
PROMETHEUS_CONFIG_PATH = MONITORING_DIR / "prometheus.yml"

# Series that Prometheus itself writes for every scrape target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})

KEYWORDS = frozenset(
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
        "and", "or", "unless", "atan2", "inf", "nan",
        # Aggregation operators, which may take their grouping clause before the parenthesis.
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expression: str) -> set[str]:
    """Return the metric names an expression selects, e.g. {"mllm_classify_requests_total"}."""
    text = _STRING.sub('""', expression)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _LABEL_MATCHERS.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)

    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name in KEYWORDS:
            continue
        names.add(name)
    return names


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """Return (panel title, expr) for every target of every panel, nested row panels included."""
    expressions: list[tuple[str, str]] = []

    def visit(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    expressions.append((panel.get("title", ""), target["expr"]))
            visit(panel.get("panels", []))

    visit(dashboard.get("panels", []))

    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and isinstance(query, dict) and query.get("query"):
            expressions.append((f"variable {variable['name']}", _label_values_selector(query["query"])))
    return expressions


def _label_values_selector(query: str) -> str:
    """Turn Grafana's `label_values(metric, label)` into the PromQL selector `metric`."""
    match = re.fullmatch(r"\s*label_values\(\s*([^,]+?)\s*,\s*\w+\s*\)\s*", query)
    return match.group(1) if match else query


def alert_expressions(rules: dict) -> list[tuple[str, str]]:
    """Return (alert or record name, expr) for every rule of a Prometheus rules file."""
    expressions = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            expressions.append((rule.get("alert") or rule.get("record"), rule["expr"]))
    return expressions


def load_dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))


def load_alert_rules() -> dict:
    return yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))


def all_expressions() -> list[tuple[str, str]]:
    """Return (source, expr) for every dashboard target, dashboard variable and alert rule."""
    dashboard = [(f"dashboard: {title}", expr) for title, expr in dashboard_expressions(load_dashboard())]
    alerts = [(f"alert: {name}", expr) for name, expr in alert_expressions(load_alert_rules())]
    return dashboard + alerts
