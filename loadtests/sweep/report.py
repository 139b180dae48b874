"""Sweep report: Pareto front, recommended setting, Markdown summary and PNG plots.

Rows come from `runner.SweepRow` or from a sweep CSV read back with `read_rows_csv`,
so a report can be redrawn without rerunning the sweep.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.sweep.runner import SweepRow

THROUGHPUT_PLOT = "throughput_vs_p95.png"
BATCH_PLOT = "batch_size_vs_latency.png"
SUMMARY_FILE = "summary.md"
CSV_FILE = "sweep.csv"


def read_rows_csv(path: Path) -> list[SweepRow]:
    """Read rows written by `runner.write_rows_csv`."""
    fields = SweepRow.__dataclass_fields__
    rows: list[SweepRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            values: dict[str, object] = {}
            for name, spec in fields.items():
                raw = record[name]
                if spec.type in ("int", int):
                    values[name] = int(raw)
                elif spec.type in ("float", float):
                    values[name] = float(raw)
                else:
                    values[name] = raw
            rows.append(SweepRow(**values))
    return rows


def pareto_front(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """Return the error-free rows that no other error-free row beats on both throughput and p95.

    A row is dominated when another has at least its throughput and at most its
    p95 latency, and is strictly better on one of them. The front is sorted by p95.
    """
    candidates = [row for row in rows if row.error_rate == 0 and not math.isnan(row.p95_ms)]
    front = []
    for row in candidates:
        dominated = any(
            other.throughput_img_s >= row.throughput_img_s
            and other.p95_ms <= row.p95_ms
            and (other.throughput_img_s > row.throughput_img_s or other.p95_ms < row.p95_ms)
            for other in candidates
        )
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda row: (row.p95_ms, -row.throughput_img_s))


@dataclass(frozen=True)
class Recommendation:
    max_batch_size: int
    max_latency_ms: int
    reason: str


def recommend(rows: Sequence[SweepRow], low_load_tolerance: float = 0.25) -> Recommendation | None:
    """Pick the setting with the best throughput at the highest load that stays cheap at the lowest load.

    A setting qualifies when none of its levels had an error and its p95 at the
    lowest concurrency is within `low_load_tolerance` (a fraction) of the best p95
    that any error-free setting reached there. The second condition keeps batching
    from slowing down a lightly loaded service. Among those, the highest throughput at the highest
    concurrency wins, and ties go to the smaller p95 there. Returns None when no
    setting ran without errors.
    """
    settings: dict[tuple[int, int], list[SweepRow]] = {}
    for row in rows:
        settings.setdefault((row.max_batch_size, row.max_latency_ms), []).append(row)

    clean = {key: levels for key, levels in settings.items() if all(level.error_rate == 0 for level in levels)}
    if not clean:
        return None

    lowest = min(row.concurrency for levels in clean.values() for row in levels)
    highest = max(row.concurrency for levels in clean.values() for row in levels)

    def level(levels: list[SweepRow], concurrency: int) -> SweepRow | None:
        return next((row for row in levels if row.concurrency == concurrency), None)

    low_p95 = {key: level(levels, lowest).p95_ms for key, levels in clean.items() if level(levels, lowest)}
    best_low_p95 = min(low_p95.values())
    limit = best_low_p95 * (1.0 + low_load_tolerance)
    eligible = {key: levels for key, levels in clean.items() if low_p95.get(key, math.inf) <= limit}

    def peak(key: tuple[int, int]) -> tuple[float, float]:
        row = level(eligible[key], highest)
        if row is None:
            return (0.0, 0.0)
        return (row.throughput_img_s, -row.p95_ms)

    best_key = max(eligible, key=peak)
    best_peak = level(eligible[best_key], highest)
    slowest_peak = min(
        (level(levels, highest) for levels in clean.values() if level(levels, highest)),
        key=lambda row: row.throughput_img_s,
    )

    reason = (
        f"max_batch_size={best_key[0]}, max_latency_ms={best_key[1]} had no errors at any level and the highest "
        f"throughput at concurrency {highest}: {best_peak.throughput_img_s:.2f} images/s with p95 "
        f"{best_peak.p95_ms:.0f} ms, against {slowest_peak.throughput_img_s:.2f} images/s for the slowest "
        f"error-free setting (max_batch_size={slowest_peak.max_batch_size}, "
        f"max_latency_ms={slowest_peak.max_latency_ms}). At concurrency {lowest} its p95 was "
        f"{low_p95[best_key]:.0f} ms, within {low_load_tolerance:.0%} of the best setting there "
        f"({best_low_p95:.0f} ms)."
    )
    return Recommendation(max_batch_size=best_key[0], max_latency_ms=best_key[1], reason=reason)


def _markdown_table(rows: Sequence[SweepRow], front: Sequence[SweepRow]) -> list[str]:
    front_ids = {id(row) for row in front}
    lines = [
        "| batch | latency ms | conc. | req | err % | img/s | p50 ms | p95 ms | p99 ms | mean batch | batch ms/img | queue mean ms | queue p95 ms | load avg | Pareto |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.max_batch_size} | {row.max_latency_ms} | {row.concurrency} | {row.requests} | "
            f"{row.error_rate * 100:.1f} | {row.throughput_img_s:.2f} | {row.p50_ms:.0f} | {row.p95_ms:.0f} | "
            f"{row.p99_ms:.0f} | {row.mean_batch_size:.2f} | {row.batch_ms_per_image:.0f} | "
            f"{row.queue_wait_mean_ms:.0f} | {row.queue_wait_p95_ms:.0f} | {row.load_avg_1m:.1f} | "
            f"{'yes' if id(row) in front_ids else ''} |"
        )
    return lines


def write_summary(
    rows: Sequence[SweepRow],
    out_dir: Path,
    settings: dict[str, object],
    machine: str,
    low_load_tolerance: float = 0.25,
) -> Path:
    """Write the Markdown summary with the table, the Pareto front and the recommendation."""
    front = pareto_front(rows)
    recommendation = recommend(rows, low_load_tolerance)

    lines = [
        "# Batch size x batching latency sweep",
        "",
        f"Model: `{settings.get('model_id')}`. Machine: {machine}.",
        "",
        "Settings of this run:",
        "",
        "```json",
        json.dumps(settings, indent=2, sort_keys=True),
        "```",
        "",
        "Latency percentiles and throughput are measured by the client; batch sizes, batch time and queue",
        "wait come from the service's /metrics, read before and after each level. Queue p95 is estimated",
        "from histogram buckets as Prometheus's histogram_quantile does. The load average column is the",
        "machine's 1-minute load when the level ended: other processes on the same cores slow every level",
        "they overlap.",
        "",
        "## Recommendation",
        "",
        recommendation.reason if recommendation else "No setting ran without errors, so none is recommended.",
        "",
        "## Pareto front (error-free levels, throughput against p95)",
        "",
    ]
    for row in front:
        lines.append(
            f"- max_batch_size={row.max_batch_size}, max_latency_ms={row.max_latency_ms}, "
            f"concurrency {row.concurrency}: {row.throughput_img_s:.2f} images/s, p95 {row.p95_ms:.0f} ms"
        )
    lines += ["", "## All levels", ""]
    lines += _markdown_table(rows, front)

    failing = [row for row in rows if row.error_rate > 0]
    if failing:
        lines += ["", "## Levels with errors", ""]
        for row in failing:
            lines.append(
                f"- max_batch_size={row.max_batch_size}, max_latency_ms={row.max_latency_ms}, "
                f"concurrency {row.concurrency}: {row.error_rate:.1%} failed, by status {row.errors}"
            )

    lines += ["", f"Plots: [{THROUGHPUT_PLOT}]({THROUGHPUT_PLOT}), [{BATCH_PLOT}]({BATCH_PLOT}).", ""]
    path = out_dir / SUMMARY_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def plot_throughput_vs_p95(rows: Sequence[SweepRow], path: Path) -> None:
    """Scatter every level (throughput against p95), colour by max_batch_size, and draw the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch_sizes = sorted({row.max_batch_size for row in rows})
    latencies = sorted({row.max_latency_ms for row in rows})
    markers = ["o", "s", "^", "D", "v", "P"]
    colours = plt.get_cmap("viridis")

    figure, axes = plt.subplots(figsize=(8, 5.5))
    for batch_index, batch_size in enumerate(batch_sizes):
        colour = colours(batch_index / max(1, len(batch_sizes) - 1))
        for latency_index, latency in enumerate(latencies):
            points = [row for row in rows if row.max_batch_size == batch_size and row.max_latency_ms == latency]
            clean = [row for row in points if row.error_rate == 0]
            failed = [row for row in points if row.error_rate > 0 and not math.isnan(row.p95_ms)]
            label = f"batch {batch_size}, {latency} ms"
            axes.scatter(
                [row.p95_ms for row in clean],
                [row.throughput_img_s for row in clean],
                color=colour,
                marker=markers[latency_index % len(markers)],
                s=55,
                label=label,
            )
            axes.scatter(
                [row.p95_ms for row in failed], [row.throughput_img_s for row in failed], color=colour, marker="x", s=55
            )
            for row in points:
                if not math.isnan(row.p95_ms):
                    axes.annotate(f"c{row.concurrency}", (row.p95_ms, row.throughput_img_s), fontsize=7, xytext=(4, 2), textcoords="offset points")

    front = pareto_front(rows)
    if front:
        axes.step(
            [row.p95_ms for row in front],
            [row.throughput_img_s for row in front],
            where="post",
            color="crimson",
            linewidth=1.5,
            label="Pareto front",
        )
        axes.scatter([row.p95_ms for row in front], [row.throughput_img_s for row in front], facecolors="none", edgecolors="crimson", s=140)

    axes.set_xlabel("p95 latency per request (ms, client side)")
    axes.set_ylabel("throughput (images/s)")
    axes.set_title("Throughput against p95 latency (cN = concurrency, x = level with errors)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_batch_size_vs_latency(rows: Sequence[SweepRow], path: Path) -> None:
    """Plot mean observed batch size against end-to-end p50 and model time per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if not math.isnan(row.mean_batch_size)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    concurrencies = sorted({row.concurrency for row in measured})
    colours = plt.get_cmap("plasma")

    for index, concurrency in enumerate(concurrencies):
        colour = colours(index / max(1, len(concurrencies)))
        points = sorted((row for row in measured if row.concurrency == concurrency), key=lambda row: row.mean_batch_size)
        left.scatter(
            [row.mean_batch_size for row in points], [row.p50_ms for row in points], color=colour, label=f"concurrency {concurrency}"
        )

    # Colour by load average: on shared cores, background load moves model time as much as batch size does.
    points = sorted(measured, key=lambda row: row.mean_batch_size)
    scatter = right.scatter(
        [row.mean_batch_size for row in points],
        [row.batch_ms_per_image for row in points],
        c=[row.load_avg_1m for row in points],
        cmap="viridis",
    )
    figure.colorbar(scatter, ax=right, label="1-minute load average")

    left.set_xlabel("mean batch size (images, from /metrics)")
    left.set_ylabel("p50 end-to-end latency per image (ms)")
    left.set_title("What a caller waits")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("mean batch size (images, from /metrics)")
    right.set_ylabel("model time per image (batch ms / images)")
    right.set_title("What the model spends per image")
    right.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(
    rows: Sequence[SweepRow],
    out_dir: Path,
    settings: dict[str, object],
    machine: str,
    low_load_tolerance: float = 0.25,
) -> list[Path]:
    """Write the summary and both plots into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = write_summary(rows, out_dir, settings, machine, low_load_tolerance)
    plot_throughput_vs_p95(rows, out_dir / THROUGHPUT_PLOT)
    plot_batch_size_vs_latency(rows, out_dir / BATCH_PLOT)
    return [summary, out_dir / THROUGHPUT_PLOT, out_dir / BATCH_PLOT]
