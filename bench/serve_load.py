"""A closed-loop client for `bench serve`: N clients, bounded in requests and time.

Each client sends one image, waits for the response and sends the next, so at
most N requests are in flight. Unlike loadtests/sweep/loadgen.py it keeps the
`timings` of every response, which the benchmark needs for its stage breakdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

from loadtests.targets import validate_loopback_url

logger = logging.getLogger(__name__)


@dataclass
class LevelStats:
    """What the clients of one level saw."""

    clients: int
    sent: int = 0
    ok: int = 0
    duration_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    # The `timings` object of each successful response (StageTimings fields, in ms).
    timings: list[dict[str, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    # The machine's 1-minute load average when the level ended; NaN until set.
    load_average: float = float("nan")
    # CPU seconds used during the level by the server's processes and by the
    # clients (this process); NaN until set.
    server_cpu_s: float = float("nan")
    client_cpu_s: float = float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second over the level."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def latency_ms(self, percentile: float) -> float:
        """Return the given percentile (0-100) of latency in ms, or NaN when no request succeeded."""
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, percentile) * 1000)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        return {
            "clients": self.clients,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "throughput_rps": round(self.throughput, 4),
            "p50_ms": round(self.latency_ms(50), 1),
            "p95_ms": round(self.latency_ms(95), 1),
            "load_average": round(self.load_average, 2),
            "server_cpu_ms_per_request": round(self.server_cpu_s * 1000 / self.ok, 2) if self.ok else float("nan"),
            "client_cpu_ms_per_request": round(self.client_cpu_s * 1000 / self.ok, 2) if self.ok else float("nan"),
        }


async def _client(
    http: httpx.AsyncClient,
    path: str,
    images: Sequence[tuple[str, bytes]],
    form: Mapping[str, str],
    budget: list[int],
    deadline: float,
    stats: LevelStats,
) -> None:
    while budget[0] > 0 and time.perf_counter() < deadline:
        # asyncio runs one client at a time between awaits, so this is atomic.
        budget[0] -= 1
        index = stats.sent
        stats.sent += 1
        name, data = images[index % len(images)]

        started = time.perf_counter()
        try:
            response = await http.post(path, files={"image": (name, data, "image/jpeg")}, data=dict(form))
        except httpx.HTTPError as error:
            key = type(error).__name__
            stats.errors[key] = stats.errors.get(key, 0) + 1
            logger.warning("request %d to %s failed: %s: %s", index, path, key, error)
            continue
        elapsed = time.perf_counter() - started

        if response.status_code != 200:
            key = str(response.status_code)
            stats.errors[key] = stats.errors.get(key, 0) + 1
            logger.warning("request %d to %s returned HTTP %d: %s", index, path, response.status_code, response.text[:200])
            continue
        stats.ok += 1
        stats.latencies_s.append(elapsed)
        stats.timings.append(response.json().get("timings") or {})


async def _run_level(
    base_url: str,
    path: str,
    images: Sequence[tuple[str, bytes]],
    form: Mapping[str, str],
    clients: int,
    max_requests: int,
    max_duration_s: float,
    request_timeout_s: float,
) -> LevelStats:
    stats = LevelStats(clients=clients)
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=httpx.Timeout(request_timeout_s), trust_env=False
    ) as http:
        started = time.perf_counter()
        deadline = started + max_duration_s
        await asyncio.gather(*(_client(http, path, images, form, budget, deadline, stats) for _ in range(clients)))
        stats.duration_s = time.perf_counter() - started
    return stats


def run_level(
    base_url: str,
    path: str,
    images: Sequence[tuple[str, bytes]],
    form: Mapping[str, str],
    clients: int,
    max_requests: int,
    max_duration_s: float,
    request_timeout_s: float = 300.0,
) -> LevelStats:
    """Send up to `max_requests` uploads from `clients` closed-loop clients for at most `max_duration_s`.

    Only loopback URLs are accepted. Requests already sent when the deadline
    passes still finish, each bounded by `request_timeout_s`.
    """
    base_url = validate_loopback_url(base_url)
    if clients < 1 or max_requests < 1 or max_duration_s <= 0:
        raise ValueError(
            f"invalid level: clients={clients}, max_requests={max_requests}, max_duration_s={max_duration_s}; "
            "all must be positive"
        )
    return asyncio.run(
        _run_level(base_url, path, images, form, clients, max_requests, max_duration_s, request_timeout_s)
    )
