"""The batch-size x batching-latency sweep: one service per grid point, several load levels each.

For each (max_batch_size, max_latency_ms) the sweep starts a fresh service on
127.0.0.1, warms it up, then drives it at each concurrency level with the
closed-loop generator in `loadgen`. /metrics is scraped right before and after
each level, so the batch-size distribution, batch time and queue wait in a row
come from that level's traffic alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from loadtests.metrics_text import read_histogram
from loadtests.payloads import sample_jpegs
from loadtests.sweep.loadgen import LevelResult, RequestPlan, run_level

logger = logging.getLogger(__name__)

BATCH_SIZE_METRIC = "mllm_classify_batch_size_images"
BATCH_DURATION_METRIC = "mllm_classify_batch_duration_seconds"
QUEUE_WAIT_METRIC = "mllm_classify_queue_wait_seconds"


@dataclass(frozen=True)
class SweepSettings:
    """The grid, the load levels and the bounds of one sweep."""

    model_id: str
    batch_sizes: tuple[int, ...]
    max_latencies_ms: tuple[int, ...]
    concurrencies: tuple[int, ...]
    # Requests per level are concurrency * requests_per_worker, at least min_requests.
    requests_per_worker: int = 4
    min_requests: int = 16
    max_level_duration_s: float = 60.0
    warmup_requests: int = 4
    request_timeout_s: float = 120.0
    protocol: str = "open"
    # Extra per-request form fields, e.g. {"max_new_tokens": "8"}.
    form: dict[str, str] = field(default_factory=dict)
    # Environment for the service processes, on top of the launcher's defaults.
    service_env: dict[str, str] = field(default_factory=dict)

    def requests_for(self, concurrency: int) -> int:
        return max(self.min_requests, concurrency * self.requests_per_worker)


@dataclass
class SweepRow:
    """One load level at one grid point; the CSV has one column per field."""

    max_batch_size: int
    max_latency_ms: int
    concurrency: int
    requests: int
    ok: int
    error_rate: float
    # Failed requests by HTTP status or exception name, as JSON.
    errors: str
    duration_s: float
    throughput_img_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    batches: float
    mean_batch_size: float
    # Batches per batch-size bucket (upper bound -> count), as JSON.
    batch_size_distribution: str
    mean_batch_ms: float
    # Mean model time per image: batch time divided by images in the batch.
    batch_ms_per_image: float
    queue_wait_mean_ms: float
    queue_wait_p95_ms: float
    # 1-minute load average of the machine when the level ended; other processes
    # on the same cores skew every figure in the row.
    load_avg_1m: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _scrape(client: httpx.Client) -> str:
    response = client.get("/metrics")
    response.raise_for_status()
    return response.text


def _round(value: float, digits: int = 2) -> float:
    return value if math.isnan(value) else round(value, digits)


def build_row(
    batch_size: int,
    max_latency_ms: int,
    level: LevelResult,
    metrics_before: str,
    metrics_after: str,
) -> SweepRow:
    """Combine the client's view of a level with the /metrics delta it caused."""
    batch_sizes = read_histogram(metrics_after, BATCH_SIZE_METRIC).minus(read_histogram(metrics_before, BATCH_SIZE_METRIC))
    batch_time = read_histogram(metrics_after, BATCH_DURATION_METRIC).minus(
        read_histogram(metrics_before, BATCH_DURATION_METRIC)
    )
    queue_wait = read_histogram(metrics_after, QUEUE_WAIT_METRIC).minus(read_histogram(metrics_before, QUEUE_WAIT_METRIC))

    distribution = {
        ("inf" if math.isinf(bound) else f"{bound:g}"): int(count)
        for bound, count in batch_sizes.distribution().items()
        if count > 0
    }
    # Total model time over total images is the time-weighted cost of one image.
    ms_per_image = batch_time.sum * 1000.0 / batch_sizes.sum if batch_sizes.sum > 0 else math.nan

    return SweepRow(
        max_batch_size=batch_size,
        max_latency_ms=max_latency_ms,
        concurrency=level.concurrency,
        requests=level.sent,
        ok=level.ok,
        error_rate=_round(level.error_rate, 4),
        errors=json.dumps(dict(sorted(level.errors.items()))),
        duration_s=_round(level.duration_s),
        throughput_img_s=_round(level.throughput, 3),
        p50_ms=_round(level.latency_percentile_ms(50)),
        p95_ms=_round(level.latency_percentile_ms(95)),
        p99_ms=_round(level.latency_percentile_ms(99)),
        batches=batch_sizes.count,
        mean_batch_size=_round(batch_sizes.mean(), 3),
        batch_size_distribution=json.dumps(distribution),
        mean_batch_ms=_round(batch_time.mean() * 1000.0),
        batch_ms_per_image=_round(ms_per_image),
        queue_wait_mean_ms=_round(queue_wait.mean() * 1000.0),
        queue_wait_p95_ms=_round(queue_wait.quantile(0.95) * 1000.0),
        load_avg_1m=_round(os.getloadavg()[0]),
    )


def sweep_grid_point(base_url: str, settings: SweepSettings, batch_size: int, max_latency_ms: int) -> list[SweepRow]:
    """Warm up one running service, then measure every concurrency level against it."""
    plan = RequestPlan(images=sample_jpegs(), form={"protocol": settings.protocol, **settings.form})
    rows: list[SweepRow] = []

    # Warm-up runs the first batches (allocator growth, lazy initialisation) outside any measurement.
    warmup = run_level(base_url, plan, 1, settings.warmup_requests, settings.max_level_duration_s, settings.request_timeout_s)
    logger.info("warm-up at batch=%d latency=%dms: %d/%d ok", batch_size, max_latency_ms, warmup.ok, warmup.sent)

    with httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client:
        for concurrency in settings.concurrencies:
            before = _scrape(client)
            level = run_level(
                base_url,
                plan,
                concurrency,
                settings.requests_for(concurrency),
                settings.max_level_duration_s,
                settings.request_timeout_s,
            )
            after = _scrape(client)

            row = build_row(batch_size, max_latency_ms, level, before, after)
            logger.info(
                "batch=%d latency=%dms concurrency=%d: %.2f img/s, p95 %.0f ms, mean batch %.2f, errors %s",
                batch_size,
                max_latency_ms,
                concurrency,
                row.throughput_img_s,
                row.p95_ms,
                row.mean_batch_size,
                row.errors,
            )
            rows.append(row)

    return rows


def run_sweep(
    settings: SweepSettings,
    on_row: Callable[[SweepRow], None] | None = None,
) -> list[SweepRow]:
    """Start a service per grid point and measure it; `on_row` is called with each row as it is made."""
    from service.launcher import ServiceStartError, free_port, start_service

    rows: list[SweepRow] = []
    for batch_size in settings.batch_sizes:
        for max_latency_ms in settings.max_latencies_ms:
            overrides = {"batching": {"max_batch_size": batch_size, "max_latency_ms": max_latency_ms}}
            logger.info("starting service for batch=%d latency=%dms", batch_size, max_latency_ms)
            try:
                # The launcher gives every service its own BENTOML_HOME, so services
                # started elsewhere on the machine cannot wipe this one's /metrics.
                with start_service(
                    model_id=settings.model_id,
                    http_port=free_port(),
                    env=dict(settings.service_env),
                    config_overrides=overrides,
                ) as service:
                    point_rows = sweep_grid_point(service.url, settings, batch_size, max_latency_ms)
            except ServiceStartError as error:
                # One grid point that cannot start should not cost the points already measured.
                logger.error("skipping batch=%d latency=%dms: the service failed to start: %s", batch_size, max_latency_ms, error)
                continue
            for row in point_rows:
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def parse_int_list(text: str) -> tuple[int, ...]:
    """Parse "1,4,8" into (1, 4, 8); raise ValueError on an empty or non-positive entry."""
    values: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"invalid list {text!r}: expected positive integers separated by commas")
        values.append(int(item))
    return tuple(values)


def settings_summary(settings: SweepSettings) -> dict[str, object]:
    """Return the settings as plain data for the report header."""
    summary = asdict(settings)
    summary["requests_per_level"] = {str(c): settings.requests_for(c) for c in settings.concurrencies}
    return summary


def write_rows_csv(rows: Sequence[SweepRow], path: Path) -> None:
    """Write rows to `path` as CSV with a header line."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames = list(SweepRow.__dataclass_fields__)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_dict())
