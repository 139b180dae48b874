"""Soak run: good and bad requests at twice the measured capacity, with memory and fd checks.

    .venv/bin/python scripts/soak.py --requests 20000 --out soak.json

Starts the demo service on 127.0.0.1 (HTTP only) and sends every request
there. Three phases:

1. Capacity: closed-loop good requests from `--limit` clients for
   `--capacity-seconds`; capacity is the completed requests per second.
2. Soak: an open-loop schedule at `--overload` x capacity until `--requests`
   have been sent or `--max-minutes` have passed, whichever comes first. A
   `--bad-fraction` of requests are bad inputs with a known 4xx status.
3. Checks: no unexpected status (any 5xx, or a bad input answered with
   anything but its 4xx or 429), RSS growth of the service processes under
   10% from the end of warm-up to the end, and the same number of open file
   descriptors before and after the soak once the service is idle.

Not part of CI: it runs for about 10 to 15 minutes. The figures go in
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from service.launcher import start_service  # noqa: E402

# Client-side cap on requests outstanding at once, so a stalled service shows
# up as client back-off in the figures instead of unbounded tasks here.
MAX_OUTSTANDING = 512


@dataclass(frozen=True)
class RequestKind:
    """One request shape: its form fields and file, and the statuses that count as correct."""

    name: str
    files: dict
    data: dict[str, str]
    expected: frozenset[int]


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def good_kinds(photos: dict[str, bytes]) -> list[RequestKind]:
    return [
        RequestKind(f"good-{name}", {"image": (f"{name}.png", data, "image/png")}, {"top_k": "3"}, frozenset({200}))
        for name, data in photos.items()
    ]


def bad_kinds() -> list[RequestKind]:
    image = _png((32, 32), (90, 90, 90))
    file = {"image": ("a.png", image, "image/png")}
    return [
        RequestKind("bad-empty-image", {"image": ("a.png", b"", "image/png")}, {}, frozenset({400})),
        RequestKind("bad-truncated-png", {"image": ("a.png", image[: len(image) // 2], "image/png")}, {}, frozenset({400})),
        RequestKind("bad-text-as-image", {"image": ("a.png", b"not an image at all", "image/png")}, {}, frozenset({400})),
        RequestKind("bad-svg", {"image": ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")}, {}, frozenset({400})),
        RequestKind("bad-protocol", file, {"protocol": "telepathy"}, frozenset({400})),
        RequestKind("bad-top-k", file, {"top_k": "many"}, frozenset({400})),
        RequestKind("bad-candidates-json", file, {"candidates": '["tabby cat"'}, frozenset({400})),
        # Without a file httpx sends form-urlencoded, which the upload routes reject with 415.
        RequestKind("bad-no-image", {}, {"protocol": "open"}, frozenset({415})),
    ]


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)
    transport_errors: Counter = field(default_factory=Counter)
    good_latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0

    def record(self, kind: RequestKind, status: int, latency_ms: float) -> None:
        self.statuses[(kind.name, status)] += 1
        if status == 429:
            return
        if status not in kind.expected:
            self.unexpected[(kind.name, status)] += 1
        elif status == 200:
            self.good_latencies_ms.append(latency_ms)


def service_pids(root_pid: int) -> list[int]:
    """Return root_pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in brackets and may contain spaces: split after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def snapshot(root_pid: int) -> dict[int, dict[str, int]]:
    """Return RSS (KiB) and open fd count of every service process."""
    result = {}
    for pid in service_pids(root_pid):
        try:
            result[pid] = {"rss_kib": rss_kib(pid), "fds": len(os.listdir(f"/proc/{pid}/fd"))}
        except OSError:
            continue
    return result


async def send(client: httpx.AsyncClient, kind: RequestKind, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/classify", files=kind.files or None, data=kind.data or None)
    except httpx.HTTPError as error:
        tally.transport_errors[type(error).__name__] += 1
        return
    tally.record(kind, response.status_code, (time.perf_counter() - started) * 1000)


async def measure_capacity(url: str, kinds: list[RequestKind], clients: int, seconds: float) -> float:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, seed: int) -> None:
        chooser = random.Random(seed)
        while time.perf_counter() < deadline:
            await send(client, chooser.choice(kinds), tally)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, seed) for seed in range(clients)))
        elapsed = time.perf_counter() - started
    completed = tally.statuses.total() - sum(count for (_, status), count in tally.statuses.items() if status == 429)
    print(f"capacity phase: {completed} requests in {elapsed:.1f} s, statuses {dict(tally.statuses)}", flush=True)
    return completed / elapsed


async def soak(
    url: str, good: list[RequestKind], bad: list[RequestKind], rate: float, total: int, bad_fraction: float,
    max_seconds: float, warmup_requests: int, root_pid: int,
) -> dict:
    tally = Tally()
    chooser = random.Random(0)
    outstanding: set[asyncio.Task] = set()
    client_skipped = 0
    samples: list[dict] = []
    warm_snapshot: dict | None = None

    # Idle connections expire on the client before uvicorn's 5 s keep-alive
    # timeout closes them, so no request is sent on a connection being closed.
    limits = httpx.Limits(max_connections=MAX_OUTSTANDING, max_keepalive_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        next_sample = started
        for index in range(total):
            due = started + index / rate
            now = time.perf_counter()
            if now - started > max_seconds:
                print(f"stopping at the time limit after {index} requests", flush=True)
                break
            if due > now:
                await asyncio.sleep(due - now)

            if index == warmup_requests:
                warm_snapshot = snapshot(root_pid)
            if time.perf_counter() >= next_sample:
                samples.append({"t_s": round(time.perf_counter() - started, 1), "processes": snapshot(root_pid)})
                next_sample += 10

            if len(outstanding) >= MAX_OUTSTANDING:
                client_skipped += 1
                continue
            kind = chooser.choice(bad) if chooser.random() < bad_fraction else chooser.choice(good)
            task = asyncio.create_task(send(client, kind, tally))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
            tally.sent += 1
        await asyncio.gather(*outstanding)
        elapsed = time.perf_counter() - started

    return {
        "tally": tally,
        "elapsed_s": elapsed,
        "client_skipped": client_skipped,
        "warm_snapshot": warm_snapshot,
        "samples": samples,
    }


def sample_photos() -> dict[str, bytes]:
    """Demo photos downscaled to 64 px, so decoding and preprocessing stay cheap and capacity is high."""
    from service.models.samples import sample_images

    photos = {}
    for name, image in sample_images().items():
        small = image.convert("RGB")
        small.thumbnail((64, 64))
        buffer = io.BytesIO()
        small.save(buffer, format="PNG")
        photos[name] = buffer.getvalue()
    return photos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=str(REPO_ROOT / "models" / "demo-llava"))
    parser.add_argument("--requests", type=int, default=20000, help="requests to send in the soak phase")
    parser.add_argument("--bad-fraction", type=float, default=0.3, help="share of bad inputs in the soak phase")
    parser.add_argument("--overload", type=float, default=2.0, help="offered rate as a multiple of the measured capacity")
    parser.add_argument("--limit", type=int, default=32, help="the service's max_concurrency (images in flight)")
    parser.add_argument("--batch-size", type=int, default=16, help="the service's max_batch_size")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--max-minutes", type=float, default=15.0, help="time limit of the soak phase")
    parser.add_argument("--warmup-fraction", type=float, default=0.1, help="share of soak requests before the memory baseline")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    photos = sample_photos()
    good, bad = good_kinds(photos), bad_kinds()
    overrides = {
        "server": {"grpc_enabled": False},
        "limits": {"max_concurrency": args.limit, "retry_after_s": 1},
        "batching": {"max_batch_size": args.batch_size},
    }
    with start_service(args.model, config_overrides=overrides) as service:
        print(f"service {service.url} ready in {service.ready_seconds:.1f} s (pid {service.pid}, log {service.log_path})", flush=True)
        capacity = asyncio.run(measure_capacity(service.url, good, args.limit, args.capacity_seconds))
        rate = capacity * args.overload
        print(f"capacity {capacity:.1f} req/s; soak at {rate:.1f} req/s for up to {args.requests} requests", flush=True)

        time.sleep(2)
        before = snapshot(service.pid)
        result = asyncio.run(
            soak(
                service.url, good, bad, rate, args.requests, args.bad_fraction, args.max_minutes * 60,
                int(args.requests * args.warmup_fraction), service.pid,
            )
        )
        # Let keep-alive connections close on the server side before counting fds.
        time.sleep(5)
        after = snapshot(service.pid)
        log_text = service.log_text()

    figures = summarize(args, capacity, rate, before, after, result, log_text)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["passed"] else 1


def summarize(args, capacity: float, rate: float, before: dict, after: dict, result: dict, log_text: str) -> dict:
    tally: Tally = result["tally"]
    warm = result["warm_snapshot"] or before
    pids = sorted(set(warm) & set(after))
    rss_growth = {
        str(pid): round((after[pid]["rss_kib"] - warm[pid]["rss_kib"]) / max(warm[pid]["rss_kib"], 1) * 100, 2)
        for pid in pids
    }
    fd_change = {str(pid): after[pid]["fds"] - before[pid]["fds"] for pid in sorted(set(before) & set(after))}

    by_status = Counter()
    for (_, status), count in tally.statuses.items():
        by_status[status] += count
    latencies = sorted(tally.good_latencies_ms)
    server_errors = sum(count for status, count in by_status.items() if status >= 500)

    passed = (
        not tally.unexpected
        and server_errors == 0
        and not tally.transport_errors
        and all(growth < 10 for growth in rss_growth.values())
        and all(change <= 0 for change in fd_change.values())
    )
    return {
        "passed": passed,
        "model": args.model,
        "cpu_count": os.cpu_count(),
        "max_concurrency": args.limit,
        "max_batch_size": args.batch_size,
        "capacity_rps": round(capacity, 2),
        "offered_rps": round(rate, 2),
        "sent": tally.sent,
        "client_skipped": result["client_skipped"],
        "elapsed_s": round(result["elapsed_s"], 1),
        "achieved_rps": round(tally.sent / result["elapsed_s"], 2),
        "statuses": {str(status): count for status, count in sorted(by_status.items())},
        "statuses_by_kind": {f"{kind} {status}": count for (kind, status), count in sorted(tally.statuses.items())},
        "unexpected": {f"{kind} {status}": count for (kind, status), count in tally.unexpected.items()},
        "transport_errors": dict(tally.transport_errors),
        "server_errors": server_errors,
        "good_latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99) - 1], 1) if latencies else None,
        },
        "rss_kib_after_warmup": {str(pid): warm[pid]["rss_kib"] for pid in pids},
        "rss_kib_end": {str(pid): after[pid]["rss_kib"] for pid in pids},
        "rss_growth_percent": rss_growth,
        "fds_before": {str(pid): before[pid]["fds"] for pid in sorted(before)},
        "fds_after": {str(pid): after[pid]["fds"] for pid in sorted(after)},
        "fd_change": fd_change,
        "rss_samples": result["samples"],
        "log_tracebacks": log_text.count("Traceback"),
    }


if __name__ == "__main__":
    sys.exit(main())
