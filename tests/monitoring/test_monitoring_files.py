"""Static checks of monitoring/: dashboard model, PromQL syntax, alert rules, provisioning, compose.

The checks against a live service and a real Prometheus are in test_monitoring_live.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from promql_names import (
    ALERTS_PATH,
    DASHBOARD_PATH,
    MONITORING_DIR,
    PROMETHEUS_CONFIG_PATH,
    all_expressions,
    alert_expressions,
    dashboard_expressions,
    load_alert_rules,
    load_dashboard,
    metric_names,
)

GRAFANA_DIR = MONITORING_DIR / "grafana"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run `make setup-system` (Debian package prometheus)")

# Grafana variables and the values used to turn dashboard queries into plain PromQL.
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$model": ".*", "${datasource}": ""}


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _as_promql(expression: str) -> str:
    for variable, value in GRAFANA_SUBSTITUTIONS.items():
        expression = expression.replace(variable, value)
    return expression


# Dashboard model ---------------------------------------------------------------


def test_dashboard_top_level_fields():
    dashboard = load_dashboard()

    assert dashboard["uid"] == "mllm-classify"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    assert isinstance(dashboard["panels"], list)
    assert dashboard["time"]["from"].startswith("now-")


def test_dashboard_datasource_variable():
    variables = {variable["name"]: variable for variable in load_dashboard()["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["datasource"]["uid"] == "${datasource}"


def test_dashboard_panel_ids_unique():
    ids = [panel["id"] for panel in _panels(load_dashboard())]

    assert len(ids) == len(set(ids))
    assert all(isinstance(panel_id, int) for panel_id in ids)


def test_dashboard_panels_use_datasource_variable():
    for panel in _panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_targets_have_expressions():
    for panel in _panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert panel["targets"], panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_grid_fits_24_columns():
    for panel in _panels(load_dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_covers_required_views():
    expressions = " ".join(expr for _, expr in dashboard_expressions(load_dashboard()))
    required = [
        "mllm_classify_requests_total",
        "mllm_classify_request_duration_seconds_bucket",
        "mllm_classify_stage_duration_seconds_bucket",
        "mllm_classify_batch_size_images_bucket",
        "mllm_classify_queue_wait_seconds_bucket",
        "mllm_classify_generated_tokens_total",
        "mllm_classify_out_of_list_total",
        "mllm_classify_abstentions_total",
        "mllm_classify_mapping_similarity_bucket",
        "mllm_classify_errors_total",
        "mllm_classify_grpc_requests_total",
    ]
    for name in required:
        assert name in expressions, name


# PromQL ------------------------------------------------------------------------


def test_metric_names_skip_functions_and_labels():
    expression = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(mllm_classify_stage_duration_seconds_bucket'
        '{model=~"$model", stage!="queue"}[$__rate_interval] offset 5m)))'
    )

    assert metric_names(expression) == {"mllm_classify_stage_duration_seconds_bucket"}


def test_metric_names_binary_operations():
    expression = (
        "sum(rate(a_total[5m])) / ignoring (code) sum without (instance) (rate(b_total[1h:1m])) > 1e3 "
        "and on (model) c_info or vector(0)"
    )

    assert metric_names(expression) == {"a_total", "b_total", "c_info"}


def test_metric_names_ignore_strings_with_names():
    assert metric_names('label_replace(up, "dst", "fake_metric_total", "src", "(.*)")') == {"up"}


def test_every_expression_selects_a_metric():
    for source, expression in all_expressions():
        assert metric_names(expression), source


@needs_promtool
def test_alert_rules_pass_promtool():
    completed = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS_PATH)], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stdout + completed.stderr


@needs_promtool
def test_dashboard_queries_parse_as_promql(tmp_path: Path):
    # promtool parses every expression of a rules file, so each dashboard query
    # becomes a recording rule with Grafana variables replaced by plain values.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": _as_promql(expression)}
        for index, (_, expression) in enumerate(dashboard_expressions(load_dashboard()))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    completed = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{len(rules)} rules found" in completed.stdout


@needs_promtool
def test_prometheus_config_passes_promtool():
    completed = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS_CONFIG_PATH)], capture_output=True, text=True, timeout=60
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


# Alert rules -------------------------------------------------------------------


def test_alert_rules_have_required_alerts():
    names = {name for name, _ in alert_expressions(load_alert_rules())}

    for required in (
        "MllmClassifyHighErrorRate",
        "MllmClassifyLatencyP95OverBudget",
        "MllmClassifyQueueSaturated",
        "MllmClassifyOutOfListSpike",
    ):
        assert required in names


def test_alert_rules_have_severity_and_summary():
    for group in load_alert_rules()["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["for"], rule["alert"]


# Provisioning and compose ------------------------------------------------------


def test_grafana_datasource_provisioning():
    config = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]

    assert config["apiVersion"] == 1
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


def test_grafana_dashboard_provider_matches_compose_mount():
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "mllm-classify.yml").read_text())
    compose = yaml.safe_load((MONITORING_DIR / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]

    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert f"./grafana/dashboards:{entry['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_compose_services_and_loopback_ports():
    compose = yaml.safe_load((MONITORING_DIR / "compose.yaml").read_text())
    services = compose["services"]

    assert set(services) == {"classifier", "prometheus", "grafana"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_mounts_exist():
    compose = yaml.safe_load((MONITORING_DIR / "compose.yaml").read_text())
    classifier_build = compose["services"]["classifier"]["build"]

    assert (MONITORING_DIR / classifier_build["context"] / classifier_build["dockerfile"]).is_file()
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            assert (MONITORING_DIR / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_config_targets_compose_service():
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    (job,) = config["scrape_configs"]

    assert job["job_name"] == "mllm-classify"
    assert job["static_configs"][0]["targets"] == ["classifier:3000"]
    assert config["rule_files"] == ["alerts.yml"]
    assert DASHBOARD_PATH.is_file()
