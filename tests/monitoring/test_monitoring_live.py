"""The dashboard and the alert rules against a running service and a real Prometheus server.

One demo-model service serves the whole module. The honesty test reads its
/metrics after traffic that reaches every exported series this test can cause
(ok answers, an out-of-list answer, a rejected image, a gRPC call), and requires
every metric name in the dashboard and the alert rules to be in it. The
Prometheus test starts Debian's `prometheus` binary on 127.0.0.1, scrapes the
service every second and runs the dashboard's main queries through its HTTP API.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from promql_names import ALERTS_PATH, PROMETHEUS_CONFIG_PATH, PROMETHEUS_SERIES, all_expressions, metric_names

from loadtests.metrics_text import exported_sample_names
from loadtests.payloads import sample_jpegs

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
# ImageNet-1k id of goldfish: the demo model's answers for the sample photos are far from it.
UNRELATED_CANDIDATE = "n01443537"

# Series that the service creates at their first event, which this test's traffic cannot cause.
# NOTE: a panel that reads them shows no data until that event. If the service
# exported them at zero from startup (the usual Prometheus practice), this test
# could require them like the others.
# Series that may legitimately be missing from a live /metrics, with the reason.
# The service creates its event counters at zero on startup, so none is expected.
UNTRIGGERED_SERIES: dict[str, str] = {}

# The dashboard's main queries, with Grafana's $__rate_interval as a 1-minute window.
MAIN_QUERIES = {
    "request rate": 'sum by (protocol, status) (rate(mllm_classify_requests_total{model=~".*"}[1m]))',
    "p95 latency per stage": (
        'histogram_quantile(0.95, sum by (le, stage) (rate(mllm_classify_stage_duration_seconds_bucket{model=~".*"}[1m])))'
    ),
    "end-to-end p95": 'histogram_quantile(0.95, sum by (le) (rate(mllm_classify_request_duration_seconds_bucket[1m])))',
    "batch size distribution": 'sum by (le) (increase(mllm_classify_batch_size_images_bucket{model=~".*"}[1m]))',
    "mean batch size": (
        "sum(rate(mllm_classify_batch_size_images_sum[1m])) / sum(rate(mllm_classify_batch_size_images_count[1m]))"
    ),
    "queue wait p95": 'histogram_quantile(0.95, sum by (le) (rate(mllm_classify_queue_wait_seconds_bucket{model=~".*"}[1m])))',
    "tokens per second": 'sum by (model) (rate(mllm_classify_generated_tokens_total{model=~".*"}[1m]))',
    "out-of-list ratio": (
        "sum by (taxonomy) (rate(mllm_classify_out_of_list_total[1m]))"
        ' / sum by (taxonomy) (rate(mllm_classify_requests_total{status="ok"}[1m]))'
    ),
    "mapping similarity p50": 'histogram_quantile(0.5, sum by (le) (rate(mllm_classify_mapping_similarity_bucket[1m])))',
    "errors by reason": "sum by (reason, transport) (rate(mllm_classify_errors_total[1m]))",
    "gRPC calls": "sum by (method, code) (rate(mllm_classify_grpc_requests_total[1m]))",
    "model loaded": "max by (model) (mllm_classify_model_loaded)",
}


def send_traffic(service) -> None:
    """Send requests that touch every series the dashboard reads: ok, out of list, rejected, gRPC."""
    from service.grpc.client import GrpcClient, GrpcClientError

    images = sample_jpegs()
    with httpx.Client(base_url=service.url, timeout=120.0, trust_env=False) as client:
        for name, image in images:
            response = client.post("/classify", files={"image": (name, image, "image/jpeg")}, data={"protocol": "open"})
            assert response.status_code == 200, response.text

        name, image = images[0]
        response = client.post(
            "/classify",
            files={"image": (name, image, "image/jpeg")},
            data={"protocol": "open", "candidates": f'["{UNRELATED_CANDIDATE}"]'},
        )
        assert response.status_code == 200, response.text

        response = client.post("/classify", files={"image": ("broken.jpg", b"not an image", "image/jpeg")})
        assert response.status_code == 400, response.text

    with GrpcClient(service.grpc_target, max_attempts=1) as grpc_client:
        grpc_client.classify(images[1][1])
        with pytest.raises(GrpcClientError):
            grpc_client.classify(b"not an image")


@pytest.fixture(scope="module")
def live_service(models_dir: Path) -> Iterator[object]:
    from service.launcher import free_port, start_service

    with start_service(model_id=str(models_dir / "demo-llava"), http_port=free_port(), grpc_port=free_port()) as service:
        yield service


@pytest.fixture(scope="module")
def live_metrics(live_service) -> dict[str, str]:
    send_traffic(live_service)
    response = httpx.get(f"{live_service.url}/metrics", timeout=30.0, trust_env=False)
    response.raise_for_status()
    return exported_sample_names(response.text)


def test_out_of_list_request_is_out_of_list(live_service):
    name, image = sample_jpegs()[0]
    response = httpx.post(
        f"{live_service.url}/classify",
        files={"image": (name, image, "image/jpeg")},
        data={"protocol": "open", "candidates": f'["{UNRELATED_CANDIDATE}"]'},
        timeout=120.0,
        trust_env=False,
    )

    assert response.status_code == 200
    assert response.json()["out_of_list"] is True


def declared_sample_names() -> set[str]:
    """Return the sample names of every metric defined in service/metrics.py and service/grpc/metrics.py."""
    from prometheus_client.metrics import MetricWrapperBase

    from service import metrics as service_metrics
    from service.grpc import metrics as grpc_metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set()
    for module in (service_metrics, grpc_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


@pytest.mark.parametrize(("source", "expression"), all_expressions(), ids=[source for source, _ in all_expressions()])
def test_dashboard_metric_exported(live_metrics, source, expression):
    for name in metric_names(expression):
        if name in PROMETHEUS_SERIES:
            continue
        if name in UNTRIGGERED_SERIES and name not in live_metrics:
            assert name in declared_sample_names(), f"{source} reads {name}, which no service metric defines"
            pytest.xfail(f"{name} is defined but not exported yet: {UNTRIGGERED_SERIES[name]}")
        assert name in live_metrics, f"{source} reads {name}, which the service does not export"
        if name.endswith("_bucket"):
            assert live_metrics[name] == "histogram", f"{name} is not a histogram bucket series"


# Prometheus ----------------------------------------------------------------------


def _prometheus_query(base_url: str, query: str) -> list[dict]:
    response = httpx.get(f"{base_url}/api/v1/query", params={"query": query}, timeout=10.0, trust_env=False)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait_for(condition, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {message}")


@pytest.fixture(scope="module")
def prometheus(live_service, tmp_path_factory) -> Iterator[str]:
    """Run Prometheus on 127.0.0.1 with monitoring/prometheus.yml aimed at the live service."""
    if PROMETHEUS is None:
        pytest.skip("prometheus missing: run `make setup-system` (Debian package prometheus)")
    from service.launcher import free_port

    workdir = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(ALERTS_PATH)]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [live_service.url.removeprefix("http://")]}]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        def ready() -> bool:
            assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
            try:
                return httpx.get(f"{base_url}/-/ready", timeout=2.0, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(ready, 60, "Prometheus to be ready")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_prometheus_scrapes_service(live_service, prometheus):
    _wait_for(
        lambda: any(sample["value"][1] == "1" for sample in _prometheus_query(prometheus, 'up{job="mllm-classify"}')),
        30,
        "a successful scrape of the service",
    )

    # rate() needs two samples of a series, so traffic goes out twice with scrapes between.
    send_traffic(live_service)
    time.sleep(3)
    send_traffic(live_service)
    time.sleep(3)

    for title, query in MAIN_QUERIES.items():
        _wait_for(lambda query=query: bool(_prometheus_query(prometheus, query)), 15, f"data for {title!r}: {query}")


def test_prometheus_loads_alert_rules(prometheus):
    response = httpx.get(f"{prometheus}/api/v1/rules", timeout=10.0, trust_env=False)
    groups = response.json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}

    assert "MllmClassifyHighErrorRate" in rules
    assert "MllmClassifyOutOfListSpike" in rules
    for name, rule in rules.items():
        assert rule["health"] in {"ok", "unknown"}, f"{name}: {rule.get('lastError')}"
