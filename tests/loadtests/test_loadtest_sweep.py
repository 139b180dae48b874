"""Sweep building blocks: /metrics parsing, the bounded load generator and the report."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from stub_server import stub_service

from loadtests.metrics_text import HistogramSnapshot, exported_sample_names, read_counter, read_histogram
from loadtests.sweep.loadgen import RequestPlan, run_level
from loadtests.sweep.report import (
    BATCH_PLOT,
    SUMMARY_FILE,
    THROUGHPUT_PLOT,
    pareto_front,
    read_rows_csv,
    recommend,
    write_report,
)
from loadtests.sweep.runner import SweepRow, build_row, parse_int_list, write_rows_csv
from loadtests.targets import TargetError, validate_loopback_url

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _batch_exposition(observations: list[int]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram(
        "batch_size_images", "Images per batch.", ("model",), namespace="mllm_classify", buckets=(1, 2, 4, 8), registry=registry
    )
    for value in observations:
        histogram.labels(model="m").observe(value)
    return generate_latest(registry).decode()


def _row(batch: int, latency: int, concurrency: int, throughput: float, p95: float, error_rate: float = 0.0) -> SweepRow:
    return SweepRow(
        max_batch_size=batch,
        max_latency_ms=latency,
        concurrency=concurrency,
        requests=10,
        ok=10 - round(error_rate * 10),
        error_rate=error_rate,
        errors="{}",
        duration_s=5.0,
        throughput_img_s=throughput,
        p50_ms=p95 / 2,
        p95_ms=p95,
        p99_ms=p95 * 1.1,
        batches=4.0,
        mean_batch_size=float(min(batch, concurrency)),
        batch_size_distribution="{}",
        mean_batch_ms=100.0,
        batch_ms_per_image=100.0 / min(batch, concurrency),
        queue_wait_mean_ms=5.0,
        queue_wait_p95_ms=9.0,
        load_avg_1m=1.5,
    )


def test_histogram_delta_and_mean():
    before = read_histogram(_batch_exposition([1, 1]), "mllm_classify_batch_size_images")
    after = read_histogram(_batch_exposition([1, 1, 4, 4, 8]), "mllm_classify_batch_size_images")
    delta = after.minus(before)

    assert delta.count == 3
    assert delta.sum == 16
    assert delta.mean() == pytest.approx(16 / 3)
    assert delta.distribution() == {1.0: 0.0, 2.0: 0.0, 4.0: 2.0, 8.0: 1.0, math.inf: 0.0}


def test_histogram_quantile_matches_prometheus_rule():
    # 10 observations: 4 in (0, 1], 4 in (1, 2], 2 in (2, 4].
    snapshot = HistogramSnapshot(buckets=((1.0, 4.0), (2.0, 8.0), (4.0, 10.0), (math.inf, 10.0)), sum=15.0, count=10.0)

    assert snapshot.quantile(0.5) == pytest.approx(1.25)
    assert snapshot.quantile(0.2) == pytest.approx(0.5)
    assert snapshot.quantile(0.9) == pytest.approx(3.0)


def test_histogram_quantile_in_inf_bucket():
    snapshot = HistogramSnapshot(buckets=((1.0, 1.0), (math.inf, 4.0)), sum=20.0, count=4.0)

    assert snapshot.quantile(0.95) == 1.0


def test_histogram_empty_gives_nan():
    empty = read_histogram("", "mllm_classify_batch_size_images")

    assert empty.count == 0
    assert math.isnan(empty.mean())
    assert math.isnan(empty.quantile(0.5))


def test_histogram_quantile_rejects_bad_q():
    with pytest.raises(ValueError, match="invalid quantile"):
        HistogramSnapshot(buckets=(), sum=0, count=0).quantile(1.5)


def test_histogram_label_selector():
    registry = CollectorRegistry()
    histogram = Histogram("wait_seconds", "Wait.", ("model",), registry=registry, buckets=(1.0,))
    histogram.labels(model="a").observe(0.5)
    histogram.labels(model="b").observe(0.5)
    histogram.labels(model="b").observe(0.5)
    text = generate_latest(registry).decode()

    assert read_histogram(text, "wait_seconds").count == 3
    assert read_histogram(text, "wait_seconds", {"model": "b"}).count == 2


def test_counter_and_sample_names():
    text = (
        "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n"
        'x_requests_total{status="ok"} 3.0\nx_requests_total{status="timeout"} 1.0\n'
    )

    assert read_counter(text, "x_requests_total") == 4.0
    assert read_counter(text, "x_requests", {"status": "ok"}) == 3.0
    assert exported_sample_names(text) == {"x_requests_total": "counter"}


def test_build_row_uses_level_delta():
    from loadtests.sweep.loadgen import LevelResult
    from collections import Counter

    level = LevelResult(concurrency=4, sent=5, ok=4, duration_s=2.0, latencies_s=[0.1, 0.2, 0.3, 0.4], errors=Counter({"503": 1}))
    row = build_row(8, 1000, level, _batch_exposition([1]), _batch_exposition([1, 4, 4]))

    assert row.batches == 2
    assert row.mean_batch_size == 4.0
    assert json.loads(row.batch_size_distribution) == {"4": 2}
    assert row.throughput_img_s == 2.0
    assert row.error_rate == 0.2
    assert json.loads(row.errors) == {"503": 1}
    assert math.isnan(row.queue_wait_mean_ms)


def test_loadgen_stops_at_request_budget():
    with stub_service(delay_s=0.02, fail_every=5) as (url, state):
        plan = RequestPlan(images=[("a.jpg", b"jpeg-bytes")], form={"protocol": "open"})
        result = run_level(url, plan, concurrency=3, max_requests=20, max_duration_s=30)

    assert result.sent == 20
    assert state.received == 20
    assert result.ok == 16
    assert result.errors == {"503": 4}
    assert result.error_rate == pytest.approx(0.2)
    assert len(result.latencies_s) == 16
    assert state.max_in_flight <= 3


def test_loadgen_stops_at_deadline():
    with stub_service(delay_s=0.2) as (url, state):
        plan = RequestPlan(images=[("a.jpg", b"jpeg-bytes")])
        result = run_level(url, plan, concurrency=2, max_requests=1000, max_duration_s=0.5)

    assert result.sent < 20
    assert result.sent == state.received
    assert result.ok == result.sent


def test_loadgen_counts_connection_errors():
    # A port that was free a moment ago: nothing listens there, so every request fails to connect.
    from service.launcher import free_port

    plan = RequestPlan(images=[("a.jpg", b"jpeg-bytes")])
    result = run_level(f"http://127.0.0.1:{free_port()}", plan, concurrency=2, max_requests=4, max_duration_s=10, request_timeout_s=2)

    assert result.sent == 4
    assert result.ok == 0
    assert result.errors == {"ConnectError": 4}


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:3000", "https://127.0.0.1:3000", "http://127.0.0.1:3000/classify", "", "http://example.com"],
)
def test_loadgen_rejects_non_loopback(url):
    plan = RequestPlan(images=[("a.jpg", b"jpeg-bytes")])

    with pytest.raises(TargetError):
        run_level(url, plan, concurrency=1, max_requests=1, max_duration_s=1)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000", "http://localhost:8080/", "http://[::1]:3000"])
def test_loopback_urls_accepted(url):
    assert validate_loopback_url(url) == url.rstrip("/")


def test_parse_int_list():
    assert parse_int_list("1, 4,8") == (1, 4, 8)
    with pytest.raises(ValueError, match="invalid list"):
        parse_int_list("1,,4")
    with pytest.raises(ValueError, match="invalid list"):
        parse_int_list("0,4")


def test_pareto_front_drops_dominated_and_failed():
    fast = _row(1, 1000, 1, throughput=2.0, p95=500)
    busy = _row(8, 1000, 8, throughput=6.0, p95=2000)
    dominated = _row(4, 1000, 8, throughput=5.0, p95=2500)
    failed = _row(8, 100, 8, throughput=9.0, p95=100, error_rate=0.5)

    front = pareto_front([fast, busy, dominated, failed])

    assert front == [fast, busy]


def test_recommend_prefers_peak_throughput_within_low_load_tolerance():
    rows = [
        # batch 1: cheap at low load, slow at high load.
        _row(1, 1000, 1, 2.0, 500), _row(1, 1000, 8, 2.2, 4000),
        # batch 8: slightly slower at low load, fastest at high load.
        _row(8, 1000, 1, 2.0, 560), _row(8, 1000, 8, 6.0, 1500),
        # batch 16: even faster at high load but much slower at low load.
        _row(16, 1000, 1, 1.0, 900), _row(16, 1000, 8, 6.5, 1400),
        # batch 32: errors at high load, so never recommended.
        _row(32, 1000, 1, 2.0, 500), _row(32, 1000, 8, 9.0, 1000, error_rate=0.1),
    ]

    choice = recommend(rows, low_load_tolerance=0.25)

    assert choice is not None
    assert (choice.max_batch_size, choice.max_latency_ms) == (8, 1000)
    assert "6.00 images/s" in choice.reason


def test_recommend_none_when_all_fail():
    assert recommend([_row(1, 10, 1, 1.0, 100, error_rate=1.0)]) is None


def test_report_files_and_csv_round_trip(tmp_path: Path):
    rows = [_row(1, 1000, 1, 2.0, 500), _row(1, 1000, 4, 2.1, 1800), _row(4, 1000, 1, 1.9, 520), _row(4, 1000, 4, 4.0, 900)]
    write_rows_csv(rows, tmp_path / "sweep.csv")

    loaded = read_rows_csv(tmp_path / "sweep.csv")
    paths = write_report(loaded, tmp_path, {"model_id": "models/bench-llava"}, "test machine")

    assert loaded == rows
    assert sorted(path.name for path in paths) == sorted([SUMMARY_FILE, THROUGHPUT_PLOT, BATCH_PLOT])
    for name in (THROUGHPUT_PLOT, BATCH_PLOT):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    summary = (tmp_path / SUMMARY_FILE).read_text()
    assert "max_batch_size=4, max_latency_ms=1000" in summary
    assert "## Pareto front" in summary
    with (tmp_path / "sweep.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_sweep_modules_do_not_import_locust():
    code = (
        "import sys, loadtests.sweep.runner, loadtests.sweep.report, loadtests.locust_runner, service.cli.loadtest_commands\n"
        "leaked = sorted(name for name in ('locust', 'gevent') if name in sys.modules)\n"
        "assert not leaked, leaked\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert completed.returncode == 0, completed.stderr
