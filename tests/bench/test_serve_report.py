"""Ratios and targets of `bench serve`, computed from a hand-made result."""

from __future__ import annotations

import math

import pytest

from bench.serve_load import LevelStats, run_level
from bench.serve_report import compute_ratios, format_report


def _level(clients: int, throughput: float, p50_ms: float) -> dict:
    return {"clients": clients, "sent": 4, "ok": 4, "errors": {}, "duration_s": 4 / throughput,
            "throughput_rps": throughput, "p50_ms": p50_ms, "p95_ms": p50_ms * 1.2}


def _model() -> dict:
    return {
        "model": "models/example",
        "raw": {
            "throughput_ips": {"1": 1.0, "2": 1.5, "4": 2.0, "8": 1.8},
            "best_batch_size": 4,
            "best_throughput_ips": 2.0,
            "single_generate_ms": 900.0,
            "single_engine_ms": 1000.0,
            "rounds": 2,
        },
        "servers": {
            "service_adaptive": {
                "max_batch_size": 4, "cold_start_s": 10.0, "model_load_s": 2.0,
                "levels": {"1": _level(1, 0.99, 1010.0), "32": _level(32, 1.96, 9000.0)},
                "one_client_stages": {"map_ms": 30.0, "total_ms": 1000.0, "map_share": 0.03},
            },
            "service_batch1": {
                "max_batch_size": 1, "cold_start_s": 10.0, "model_load_s": 2.0,
                "levels": {"1": _level(1, 0.99, 1010.0), "32": _level(32, 1.0, 30000.0)},
            },
            "litserve": {
                "max_batch_size": 4, "cold_start_s": 8.0,
                "levels": {"1": _level(1, 0.95, 1080.0), "32": _level(32, 1.8, 10000.0)},
            },
        },
    }


def test_ratios_against_raw_and_peer() -> None:
    ratios = compute_ratios(_model())

    assert ratios["raw_batching_gain"] == 2.0
    assert ratios["service_32_vs_raw_best"] == 0.98
    assert ratios["service_32_vs_litserve_32"] == pytest.approx(1.089, abs=0.001)
    assert ratios["service_batching_gain"] == 1.96
    assert ratios["service_gain_vs_raw_gain"] == 0.98
    assert ratios["service_overhead_ms"] == 10.0
    assert ratios["service_overhead_vs_generate_ms"] == 110.0
    assert ratios["litserve_overhead_ms"] == 80.0


def test_targets_met_and_missed() -> None:
    model = _model()
    model["servers"]["service_adaptive"]["levels"]["1"]["p50_ms"] = 1100.0
    model["servers"]["service_adaptive"]["one_client_stages"]["map_share"] = 0.2

    targets = compute_ratios(model)["targets"]

    assert targets["service_32_vs_raw_best"]["met"] is True
    assert targets["service_above_litserve"]["met"] is True
    assert targets["service_gain_vs_raw_gain"]["met"] is True
    assert targets["service_overhead_ms"]["met"] is False
    assert targets["map_share"]["met"] is False


def test_missing_peer_is_not_measured() -> None:
    model = _model()
    del model["servers"]["litserve"]

    ratios = compute_ratios(model)

    assert ratios["service_32_vs_litserve_32"] is None
    assert ratios["targets"]["service_above_litserve"]["met"] is None


def test_report_names_every_server_and_target() -> None:
    model = _model()
    model["ratios"] = compute_ratios(model)
    report = {"models": [model], "load_average_start": (1.0, 1.0, 1.0), "load_average_end": (2.0, 2.0, 2.0), "wall_s": 60.0}

    text = format_report(report)

    for name in ("service_adaptive", "service_batch1", "litserve", "raw best batch 4"):
        assert name in text
    assert "target map_share <= 0.05: 0.030 met" in text


def test_level_stats_without_responses() -> None:
    stats = LevelStats(clients=8)

    assert stats.throughput == 0.0
    assert math.isnan(stats.latency_ms(50))


def test_level_rejects_other_hosts() -> None:
    with pytest.raises(ValueError):
        run_level("http://192.0.2.1:3000", "/classify", [("a.jpg", b"x")], {}, clients=1, max_requests=1, max_duration_s=1)


def test_level_requests_scale_with_speed() -> None:
    from pathlib import Path

    from bench.serve_bench import BenchSettings, _level_requests

    settings = BenchSettings(models=["tiny"], models_dir=Path("models"), one_client_requests=24, requests_per_client=4, min_level_s=8.0)
    fast = {1: 30.0, 2: 55.0, 4: 90.0, 8: 140.0, 16: 190.0, 32: 220.0}
    slow = {1: 3.0, 2: 3.5, 4: 4.0, 8: 4.5, 16: 4.2, 32: 3.9}

    assert _level_requests(1, 32, fast, settings) == 240
    assert _level_requests(8, 32, fast, settings) == 1120
    assert _level_requests(32, 32, fast, settings) == 1760
    assert _level_requests(32, 1, fast, settings) == 240
    assert _level_requests(1, 8, slow, settings) == 24
    assert _level_requests(32, 8, slow, settings) == 128
