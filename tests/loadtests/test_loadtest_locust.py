"""Headless Locust runs in a subprocess: the stop bounds, the target check and a real run.

Locust is never imported here (it patches sockets with gevent); every run goes
through `loadtests.locust_runner`, which starts `python -m locust`.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from stub_server import stub_service

from loadtests.locust_runner import LOADTESTS_DIR, build_command, read_aggregated_stats, run_locust
from loadtests.targets import TargetError

# Every task name of ProtocolMixUser, as Locust writes it in the stats CSV.
MIX_REQUEST_NAMES = {
    "/classify open",
    "/classify closed",
    "/classify choice",
    "/classify multilabel",
    "/classify_batch open x3",
    "/taxonomies",
}


def _stats_rows(stats_csv: Path) -> dict[str, dict[str, str]]:
    with stats_csv.open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_build_command_bounds(tmp_path: Path):
    command = build_command("steady", "http://127.0.0.1:3000", 4, 2.0, 20, 300, tmp_path / "s", tmp_path / "s.html")

    assert command[command.index("--run-time") + 1] == "20s"
    assert command[command.index("--max-requests") + 1] == "300"
    assert command[command.index("--hard-stop-s") + 1] == "35"
    assert command[-1] == "SteadyUser"


@pytest.mark.parametrize(
    ("scenario", "host", "users", "run_time", "message"),
    [
        ("steady", "http://192.168.1.10:3000", 4, 20, "only target"),
        ("steady", "http://127.0.0.1:3000", 0, 20, "invalid users"),
        ("steady", "http://127.0.0.1:3000", 4, 0, "invalid run time"),
        ("steady", "http://127.0.0.1:3000", 4, 3600, "invalid run time"),
        ("soak", "http://127.0.0.1:3000", 4, 20, "unknown scenario"),
        ("grpc", "http://127.0.0.1:3000", 4, 20, "needs a gRPC target"),
    ],
)
def test_build_command_rejects(tmp_path: Path, scenario, host, users, run_time, message):
    with pytest.raises((TargetError, ValueError), match=message):
        build_command(scenario, host, users, 1.0, run_time, 100, tmp_path / "x", tmp_path / "x.html")


def test_locust_stops_at_request_limit(tmp_path: Path):
    with stub_service(delay_s=0.01) as (url, state):
        run = run_locust("steady", url, tmp_path, users=3, spawn_rate=3, run_time_s=25, max_requests=6)

    stats = read_aggregated_stats(run.stats_csv)
    log = run.log.read_text()
    assert run.exit_code == 0, log[-3000:]
    assert "request limit of 6 reached" in log
    # Requests already in flight when the limit is hit still finish.
    assert 6 <= stats.requests <= 9
    assert stats.failures == 0
    assert state.received == stats.requests
    assert run.html.exists()


def test_locust_counts_failures(tmp_path: Path):
    with stub_service(fail_every=2, fail_status=500) as (url, _state):
        run = run_locust("steady", url, tmp_path, users=2, spawn_rate=2, run_time_s=20, max_requests=4)

    stats = read_aggregated_stats(run.stats_csv)
    assert run.exit_code == 1
    assert stats.failures >= 2
    assert run.failures_csv.read_text().count("HTTP 500") >= 1


def test_locust_rejects_non_http_loopback(tmp_path: Path):
    # The scheme check inside Locust runs at init, before any user starts; port 9 is
    # never contacted because the check fails first.
    command = [
        sys.executable, "-m", "locust", "-f", str(LOADTESTS_DIR / "locustfile.py"), "--headless",
        "-u", "1", "-t", "2s", "--host", "ftp://127.0.0.1:9", "SteadyUser",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 1
    assert "the scheme must be http" in completed.stderr


@pytest.mark.slow
def test_locust_mix_against_demo_model(demo_service, tmp_path: Path):
    run = run_locust("mix", demo_service.url, tmp_path, users=4, spawn_rate=4, run_time_s=20, max_requests=400)

    stats = read_aggregated_stats(run.stats_csv)
    rows = _stats_rows(run.stats_csv)
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    assert stats.failures == 0, run.failures_csv.read_text()
    assert stats.requests >= 10
    assert "/classify open" in rows
    assert set(rows) - {"Aggregated"} <= MIX_REQUEST_NAMES
    assert run.html.stat().st_size > 0


@pytest.mark.slow
def test_locust_burst_against_demo_model(demo_service, tmp_path: Path):
    run = run_locust("burst", demo_service.url, tmp_path, users=6, spawn_rate=6, run_time_s=15, max_requests=400)

    stats = read_aggregated_stats(run.stats_csv)
    assert run.exit_code == 0, run.log.read_text()[-3000:]
    assert stats.failures == 0, run.failures_csv.read_text()
    assert stats.requests >= 10
