"""Run a headless Locust scenario as a subprocess and read its CSV statistics.

Locust patches sockets with gevent when imported, so the service, the CLI and
pytest never import it: they call `run_locust`, which starts
`python -m locust` with bounded users, run time and request count.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loadtests.targets import validate_loopback_grpc_target, validate_loopback_url

logger = logging.getLogger(__name__)

LOADTESTS_DIR = Path(__file__).resolve().parent
# Scenario name -> (locustfile, user classes to run; empty = the file's default set).
SCENARIOS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "steady": (LOADTESTS_DIR / "locustfile.py", ("SteadyUser",)),
    "mix": (LOADTESTS_DIR / "locustfile.py", ("ProtocolMixUser",)),
    "grpc": (LOADTESTS_DIR / "locustfile.py", ("GrpcClassifyUser",)),
    "burst": (LOADTESTS_DIR / "burst.py", ()),
}
MAX_USERS = 256
MAX_RUN_TIME_S = 600


@dataclass(frozen=True)
class LocustRun:
    """Paths and outcome of one headless run."""

    exit_code: int
    stats_csv: Path
    failures_csv: Path
    html: Path
    log: Path


@dataclass(frozen=True)
class AggregatedStats:
    """The "Aggregated" row of Locust's `<prefix>_stats.csv`."""

    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    requests_per_s: float


def build_command(
    scenario: str,
    host: str,
    users: int,
    spawn_rate: float,
    run_time_s: int,
    max_requests: int,
    csv_prefix: Path,
    html: Path,
    grpc_target: str | None = None,
) -> list[str]:
    """Return the locust command line for a bounded headless run; raise ValueError on an invalid bound."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    validate_loopback_url(host)
    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"invalid users {users}: expected 1 to {MAX_USERS}")
    if not 1 <= run_time_s <= MAX_RUN_TIME_S:
        raise ValueError(f"invalid run time {run_time_s} s: expected 1 to {MAX_RUN_TIME_S}")
    if max_requests < 1 or spawn_rate <= 0:
        raise ValueError(f"invalid bounds: max_requests={max_requests}, spawn_rate={spawn_rate}; both must be positive")
    if scenario == "grpc":
        if not grpc_target:
            raise ValueError("the grpc scenario needs a gRPC target, e.g. 127.0.0.1:50051")
        validate_loopback_grpc_target(grpc_target)

    locustfile, user_classes = SCENARIOS[scenario]
    command = [
        sys.executable, "-m", "locust",
        "-f", str(locustfile),
        "--headless",
        "--users", str(users),
        "--spawn-rate", str(spawn_rate),
        "--run-time", f"{run_time_s}s",
        "--stop-timeout", "10",
        "--host", host,
        "--max-requests", str(max_requests),
        # A margin over --run-time for users still finishing a request.
        "--hard-stop-s", str(run_time_s + 15),
        "--csv", str(csv_prefix),
        "--html", str(html),
        "--only-summary",
    ]
    if grpc_target:
        command += ["--grpc-target", grpc_target]
    command += list(user_classes)
    return command


def run_locust(
    scenario: str,
    host: str,
    out_dir: Path,
    users: int = 4,
    spawn_rate: float = 4.0,
    run_time_s: int = 30,
    max_requests: int = 1000,
    grpc_target: str | None = None,
) -> LocustRun:
    """Run one scenario headless, writing `<scenario>_stats.csv`, `<scenario>.html` and a log into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix = out_dir / scenario
    html = out_dir / f"{scenario}.html"
    log = out_dir / f"{scenario}.log"
    command = build_command(scenario, host, users, spawn_rate, run_time_s, max_requests, csv_prefix, html, grpc_target)

    logger.info("running %s", " ".join(command))
    with log.open("wb") as log_file:
        # The hard stop inside Locust ends the run; this timeout only catches a hung process.
        completed = subprocess.run(
            command, stdout=log_file, stderr=subprocess.STDOUT, timeout=run_time_s + 90, check=False
        )
    return LocustRun(
        exit_code=completed.returncode,
        stats_csv=Path(f"{csv_prefix}_stats.csv"),
        failures_csv=Path(f"{csv_prefix}_failures.csv"),
        html=html,
        log=log,
    )


def read_aggregated_stats(stats_csv: Path) -> AggregatedStats:
    """Read the "Aggregated" row of a Locust stats CSV; raise ValueError when it is missing."""
    with stats_csv.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return AggregatedStats(
                    requests=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    median_ms=float(row["Median Response Time"]),
                    p95_ms=float(row["95%"]),
                    requests_per_s=float(row["Requests/s"]),
                )
    raise ValueError(f"no Aggregated row in {stats_csv}")
