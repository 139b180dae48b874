"""A closed-loop HTTP load generator for POST /classify, bounded in requests and time.

`concurrency` workers share one request budget: each sends a request, waits for
the response and sends the next, so at most `concurrency` requests are in flight.
The run stops when the budget is spent or the deadline passes, whichever comes
first, and then waits only for the requests already sent (each bounded by the
client timeout). Locust does the same job for the scenarios in `locustfile.py`,
but this loop has no gevent patching and measures latency with
`time.perf_counter` around each request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

from loadtests.targets import validate_loopback_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestPlan:
    """Request contents of one level: one image per request, cycled through `images`, with the same form fields."""

    images: Sequence[tuple[str, bytes]]
    form: Mapping[str, str] = field(default_factory=dict)
    path: str = "/classify"


@dataclass
class LevelResult:
    """Outcome of one load level, as the client saw it."""

    concurrency: int
    sent: int
    ok: int
    duration_s: float
    # Seconds per successful request, in completion order.
    latencies_s: list[float]
    # Failed requests by HTTP status, or by exception class name for transport errors.
    errors: Counter[str]

    @property
    def error_rate(self) -> float:
        return (self.sent - self.ok) / self.sent if self.sent else 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second over the whole level."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def latency_percentile_ms(self, percentile: float) -> float:
        """Return the given percentile (0-100) of successful request latency in ms, or NaN with none."""
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), percentile) * 1000.0)


async def _worker(
    client: httpx.AsyncClient,
    plan: RequestPlan,
    budget: list[int],
    deadline: float,
    result: LevelResult,
) -> None:
    while budget[0] > 0 and time.perf_counter() < deadline:
        # The budget is shared; asyncio runs one worker at a time, so this decrement is atomic.
        budget[0] -= 1
        index = result.sent
        result.sent += 1
        name, image = plan.images[index % len(plan.images)]

        started = time.perf_counter()
        try:
            response = await client.post(plan.path, files={"image": (name, image, "image/jpeg")}, data=dict(plan.form))
        except httpx.HTTPError as error:
            result.errors[type(error).__name__] += 1
            logger.warning("request %d failed: %s: %s", index, type(error).__name__, error)
            continue
        elapsed = time.perf_counter() - started

        if response.status_code == 200:
            result.ok += 1
            result.latencies_s.append(elapsed)
        else:
            result.errors[str(response.status_code)] += 1
            logger.warning("request %d returned HTTP %d: %s", index, response.status_code, response.text[:200])


async def run_level_async(
    base_url: str,
    plan: RequestPlan,
    concurrency: int,
    max_requests: int,
    max_duration_s: float,
    request_timeout_s: float = 120.0,
) -> LevelResult:
    """Send up to `max_requests` requests from `concurrency` workers for at most `max_duration_s` seconds."""
    base_url = validate_loopback_url(base_url)
    if concurrency < 1 or max_requests < 1 or max_duration_s <= 0:
        raise ValueError(
            f"invalid load level: concurrency={concurrency}, max_requests={max_requests}, "
            f"max_duration_s={max_duration_s}; all must be positive"
        )
    if not plan.images:
        raise ValueError("invalid request plan: no images to send")

    result = LevelResult(concurrency=concurrency, sent=0, ok=0, duration_s=0.0, latencies_s=[], errors=Counter())
    budget = [max_requests]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(request_timeout_s)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout, trust_env=False) as client:
        started = time.perf_counter()
        deadline = started + max_duration_s
        workers = [_worker(client, plan, budget, deadline, result) for _ in range(concurrency)]
        await asyncio.gather(*workers)
        result.duration_s = time.perf_counter() - started

    return result


def run_level(
    base_url: str,
    plan: RequestPlan,
    concurrency: int,
    max_requests: int,
    max_duration_s: float,
    request_timeout_s: float = 120.0,
) -> LevelResult:
    """Run `run_level_async` in a fresh event loop; see it for the bounds."""
    return asyncio.run(
        run_level_async(base_url, plan, concurrency, max_requests, max_duration_s, request_timeout_s)
    )
