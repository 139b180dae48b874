"""`mllm-classify loadtest`: the batch-size x latency sweep and headless Locust runs.

Every command targets only services on 127.0.0.1: `sweep` starts its own, and
`run` rejects any --host that is not a loopback http URL.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import click

logger = logging.getLogger(__name__)


def _parse_list(_ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    from loadtests.sweep.runner import parse_int_list

    try:
        return parse_int_list(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from error


def _code_version() -> str:
    """Return the git commit of the service code, with "+changes" when the tree has uncommitted edits."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "service", "mapping"], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + ("+changes" if status.stdout.strip() else "")


def _machine_description() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, no GPU used"


@click.group("loadtest")
def loadtest_group() -> None:
    """Load tests: the batching sweep and Locust scenarios."""


@loadtest_group.command("sweep")
@click.option("--model", "model_id", default="models/bench-llava", show_default=True, help="Model path the service loads.")
@click.option("--batch-sizes", default="2,4,8", show_default=True, callback=_parse_list, help="max_batch_size values (images, at least 2), comma-separated.")
@click.option("--latencies-ms", default="5000,60000", show_default=True, callback=_parse_list, help="max_latency_ms values (ms), comma-separated.")
@click.option("--concurrency", "concurrencies", default="1,4,8", show_default=True, callback=_parse_list, help="Client concurrency levels, comma-separated.")
@click.option("--requests-per-worker", default=3, show_default=True, type=click.IntRange(1, 100), help="Requests per level = concurrency x this, at least --min-requests.")
@click.option("--min-requests", default=6, show_default=True, type=click.IntRange(1, 10_000), help="Lower bound on requests per level.")
@click.option("--max-level-seconds", default=120.0, show_default=True, type=click.FloatRange(1, 1800), help="Time limit per level in seconds.")
@click.option("--max-new-tokens", default=None, type=click.IntRange(1, 512), help="Per-request max_new_tokens; default: the service's.")
@click.option("--torch-threads", default=0, show_default=True, type=click.IntRange(0, 256), help="Threads torch uses in the service; 0 keeps torch's default.")
@click.option("--low-load-tolerance", default=0.25, show_default=True, type=click.FloatRange(0, 10), help="Allowed p95 excess over the best setting at the lowest concurrency, as a fraction.")
@click.option("--out", "out_dir", default="docs/loadtest-sweep", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for sweep.csv, summary.md and the plots.")
def sweep_command(
    model_id: str,
    batch_sizes: tuple[int, ...],
    latencies_ms: tuple[int, ...],
    concurrencies: tuple[int, ...],
    requests_per_worker: int,
    min_requests: int,
    max_level_seconds: float,
    max_new_tokens: int | None,
    torch_threads: int,
    low_load_tolerance: float,
    out_dir: Path,
) -> None:
    """Start the service for each (max_batch_size, max_latency_ms) and measure it at each concurrency."""
    from loadtests.sweep.report import CSV_FILE, write_report
    from loadtests.sweep.runner import SweepSettings, run_sweep, settings_summary, write_rows_csv

    if not Path(model_id).exists():
        raise click.BadParameter(f"model directory {model_id} not found; run `mllm-classify build-models --out models` first", param_hint="--model")

    if min(batch_sizes) < 2:
        # BentoML 1.4 rejects max_batch_size=1 on a batchable API, so the service would not start.
        raise click.BadParameter(
            f"invalid batch size {min(batch_sizes)}: BentoML requires max_batch_size >= 2; "
            "the concurrency-1 level already shows unbatched latency",
            param_hint="--batch-sizes",
        )

    form = {"max_new_tokens": str(max_new_tokens)} if max_new_tokens else {}
    service_env = {"MLLM_CLASSIFY_MODEL__TORCH_THREADS": str(torch_threads)} if torch_threads else {}
    settings = SweepSettings(
        model_id=model_id,
        batch_sizes=batch_sizes,
        max_latencies_ms=latencies_ms,
        concurrencies=concurrencies,
        requests_per_worker=requests_per_worker,
        min_requests=min_requests,
        max_level_duration_s=max_level_seconds,
        form=form,
        service_env=service_env,
    )

    rows = []
    csv_path = out_dir / CSV_FILE

    def save_row(row) -> None:
        # Write the CSV after every row, so an interrupted sweep keeps what it measured.
        rows.append(row)
        write_rows_csv(rows, csv_path)
        click.echo(
            f"batch={row.max_batch_size} latency={row.max_latency_ms}ms c={row.concurrency}: "
            f"{row.throughput_img_s:.2f} img/s, p50 {row.p50_ms:.0f} ms, p95 {row.p95_ms:.0f} ms, "
            f"mean batch {row.mean_batch_size:.2f}, errors {row.errors}"
        )

    run_sweep(settings, on_row=save_row)
    summary = {**settings_summary(settings), "code_version": _code_version()}
    paths = write_report(rows, out_dir, summary, _machine_description(), low_load_tolerance)
    click.echo(f"wrote {csv_path}, " + ", ".join(str(path) for path in paths))


@loadtest_group.command("report")
@click.option("--csv", "csv_path", default="docs/loadtest-sweep/sweep.csv", show_default=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Sweep CSV to redraw.")
@click.option("--settings-json", default=None, help="Settings to print in the summary, as a JSON object; default: the grid read from the CSV.")
@click.option("--low-load-tolerance", default=0.25, show_default=True, type=click.FloatRange(0, 10), help="Allowed p95 excess at the lowest concurrency, as a fraction.")
def report_command(csv_path: Path, settings_json: str | None, low_load_tolerance: float) -> None:
    """Redraw summary.md and the plots from a sweep CSV without rerunning the sweep."""
    from loadtests.sweep.report import read_rows_csv, write_report

    rows = read_rows_csv(csv_path)
    if settings_json:
        settings = json.loads(settings_json)
    else:
        settings = {
            "batch_sizes": sorted({row.max_batch_size for row in rows}),
            "max_latencies_ms": sorted({row.max_latency_ms for row in rows}),
            "concurrencies": sorted({row.concurrency for row in rows}),
        }
    paths = write_report(rows, csv_path.parent, settings, _machine_description(), low_load_tolerance)
    click.echo("wrote " + ", ".join(str(path) for path in paths))


@loadtest_group.command("run")
@click.option("--scenario", type=click.Choice(["steady", "burst", "mix", "grpc"]), default="steady", show_default=True, help="Locust scenario.")
@click.option("--host", required=True, help="Service base URL; only http://127.0.0.1:PORT, localhost or [::1] are accepted.")
@click.option("--grpc-target", default=None, help="HOST:PORT of the gRPC server, for the grpc scenario (loopback only).")
@click.option("--users", default=4, show_default=True, type=click.IntRange(1, 256), help="Concurrent Locust users (peak users for burst).")
@click.option("--spawn-rate", default=4.0, show_default=True, type=click.FloatRange(0.1, 256), help="Users started per second.")
@click.option("--run-time", "run_time_s", default=30, show_default=True, type=click.IntRange(1, 600), help="Run time in seconds.")
@click.option("--max-requests", default=1000, show_default=True, type=click.IntRange(1, 1_000_000), help="Stop after this many requests.")
@click.option("--out", "out_dir", default="var/locust", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the CSV, HTML and log files.")
def run_command(
    scenario: str,
    host: str,
    grpc_target: str | None,
    users: int,
    spawn_rate: float,
    run_time_s: int,
    max_requests: int,
    out_dir: Path,
) -> None:
    """Run one Locust scenario headless against a service already running on loopback."""
    from loadtests.locust_runner import read_aggregated_stats, run_locust
    from loadtests.targets import TargetError

    try:
        run = run_locust(scenario, host, out_dir, users, spawn_rate, run_time_s, max_requests, grpc_target)
    except (TargetError, ValueError) as error:
        raise click.UsageError(str(error)) from error

    if not run.stats_csv.exists():
        raise click.ClickException(f"locust exited with code {run.exit_code} and wrote no statistics; see {run.log}")
    stats = read_aggregated_stats(run.stats_csv)
    click.echo(
        f"{scenario}: {stats.requests} requests, {stats.failures} failures, {stats.requests_per_s:.2f} req/s, "
        f"median {stats.median_ms:.0f} ms, p95 {stats.p95_ms:.0f} ms; report {run.html}"
    )
    if run.exit_code != 0:
        raise click.ClickException(f"locust exited with code {run.exit_code}; see {run.log}")
