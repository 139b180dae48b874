"""`mllm-classify bench serve`: the service against raw batched generate and a LitServe peer.

For each model, in one run on one machine:

1. raw: `backend.generate` in this process at batch 1, 2, 4, 8, 16, 32 on the
   same images and open prompt, plus the in-process Engine on one image
   (decode, preprocess, generate, parse, map) as the single-image baseline;
2. the BentoML service with adaptive batching, then with max_batch_size=1,
   and the LitServe peer (bench/litserve_peer.py), each at 1, 8 and 32 clients.

All three servers stay up together. Each client count runs on every server in
turn and is followed by a raw round, and raw figures are medians over the
rounds, so load from other processes on a shared machine lands on both sides
of each ratio. Only the server under load works; the others and this process
wait idle.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bench.serve_load import LevelStats, run_level
from bench.serve_report import compute_ratios, format_report

logger = logging.getLogger(__name__)

RAW_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
CLIENT_COUNTS = (1, 8, 32)
# The Engine logs this line when the backend has loaded (service/engine.py).
_LOAD_LINE = re.compile(r"loaded backend \S+ in ([0-9.]+) s")


@dataclass
class BenchSettings:
    """Knobs of one `bench serve` run; every figure in the JSON names the settings it ran with."""

    models: Sequence[str]
    models_dir: Path
    max_new_tokens: int = 8
    torch_threads: int = 1
    # 0: use the best batch size of the run's first raw round.
    max_batch_size: int = 0
    max_latency_ms: int = 600000
    peer_batch_timeout_s: float = 0.01
    one_client_requests: int = 24
    requests_per_client: int = 4
    # A level of a fast model gets enough requests to last about this long at
    # the raw model's speed: a one-second level swung its throughput by 30%.
    min_level_s: float = 8.0
    warmup_requests: int = 4
    max_level_s: float = 300.0
    skip_peer: bool = False


@dataclass
class RawRounds:
    """Seconds per call of each raw measurement, one entry per round."""

    batch_seconds: dict[int, list[float]] = field(default_factory=lambda: {size: [] for size in RAW_BATCH_SIZES})
    engine_single_seconds: list[float] = field(default_factory=list)

    def throughput(self) -> dict[int, float]:
        """Return images per second at each batch size, from the median call time."""
        return {size: size / statistics.median(times) for size, times in self.batch_seconds.items() if times}


def encode_samples() -> list[tuple[str, bytes]]:
    """Return the bundled sample photos as JPEG uploads, the bytes every client and raw call use."""
    from service.models.samples import sample_images

    uploads = []
    for name, image in sample_images().items():
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        uploads.append((f"{name}.jpg", buffer.getvalue()))
    return uploads


def decode_upload(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


class RawRunner:
    """The model in this process: batched generate sweeps and the Engine on one image."""

    def __init__(self, model_id: str, settings: BenchSettings, uploads: Sequence[tuple[str, bytes]]) -> None:
        import torch

        from service.config import load_config
        from service.engine import Engine
        from service.schemas import ClassifyParams

        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        config = load_config(
            environ={
                "MLLM_CLASSIFY_MODEL__MODEL_ID": model_id,
                "MLLM_CLASSIFY_MODEL__MAX_NEW_TOKENS": str(settings.max_new_tokens),
                "MLLM_CLASSIFY_MODEL__TORCH_THREADS": str(settings.torch_threads),
            }
        )
        self.engine = Engine(config)
        self.max_new_tokens = settings.max_new_tokens
        self.params = ClassifyParams(protocol="open", max_new_tokens=settings.max_new_tokens)
        # The open protocol's first prompt is the text the service sends to generate.
        self.prompt = self.engine.create_run(self.params).first_prompt().text
        self.uploads = list(uploads)
        self.images = [decode_upload(data) for _, data in uploads]
        self.rounds = RawRounds()

    def warm_up(self) -> None:
        self.engine.backend.generate(self.images[:2], [self.prompt] * 2, self.max_new_tokens)
        self.engine.classify_batch(self.images[:1], [self.params])

    def run_round(self) -> None:
        """Time every batch size once and the single-image Engine path once."""
        for size in RAW_BATCH_SIZES:
            images = [self.images[i % len(self.images)] for i in range(size)]
            started = time.perf_counter()
            self.engine.backend.generate(images, [self.prompt] * size, self.max_new_tokens)
            self.rounds.batch_seconds[size].append(time.perf_counter() - started)

        # Decode included: the service decodes every upload too.
        started = time.perf_counter()
        image = decode_upload(self.uploads[0][1])
        self.engine.classify_batch([image], [self.params])
        self.rounds.engine_single_seconds.append(time.perf_counter() - started)

    def describe_last_round(self) -> str:
        times = "  ".join(f"{size}: {size / seconds[-1]:.3f}" for size, seconds in self.rounds.batch_seconds.items())
        return f"images/s {times}; engine single image {self.rounds.engine_single_seconds[-1] * 1000:.0f} ms"

    def summary(self) -> dict[str, Any]:
        throughput = self.rounds.throughput()
        best = max(throughput, key=throughput.__getitem__)
        return {
            "throughput_ips": {str(size): round(value, 4) for size, value in throughput.items()},
            "batch_seconds": {str(size): [round(t, 4) for t in times] for size, times in self.rounds.batch_seconds.items()},
            "best_batch_size": best,
            "best_throughput_ips": round(throughput[best], 4),
            "single_generate_ms": round(statistics.median(self.rounds.batch_seconds[1]) * 1000, 1),
            "single_engine_ms": round(statistics.median(self.rounds.engine_single_seconds) * 1000, 1),
            "rounds": len(self.rounds.engine_single_seconds),
        }


def _model_load_seconds(log_text: str) -> float | None:
    match = _LOAD_LINE.search(log_text)
    return float(match.group(1)) if match else None


@dataclass
class RunningServer:
    """One server under test, started and warmed up, with the levels measured so far."""

    url: str
    path: str
    info: dict[str, Any]
    pid: int
    levels: dict[int, LevelStats] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by the server process and its live children."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    @property
    def form(self) -> dict[str, str]:
        return {"protocol": "open", "max_new_tokens": str(self.info["max_new_tokens"])} if self.path == "/classify" else {}


def _start_service(
    stack: contextlib.ExitStack, model_id: str, max_batch_size: int, settings: BenchSettings, log_dir: Path
) -> RunningServer:
    from service.launcher import start_service

    overrides = {
        "batching": {"max_batch_size": max_batch_size, "max_latency_ms": settings.max_latency_ms},
        "server": {"grpc_enabled": False},
        "model": {"max_new_tokens": settings.max_new_tokens, "torch_threads": settings.torch_threads},
    }
    service = stack.enter_context(start_service(model_id, config_overrides=overrides, log_dir=log_dir))
    info = {
        "max_batch_size": max_batch_size,
        "max_new_tokens": settings.max_new_tokens,
        "cold_start_s": round(service.ready_seconds, 2),
        "model_load_s": _model_load_seconds(service.log_text()),
    }
    return RunningServer(url=service.url, path="/classify", info=info, pid=service.pid)


def _start_peer(
    stack: contextlib.ExitStack, model_id: str, max_batch_size: int, settings: BenchSettings, log_dir: Path
) -> RunningServer:
    from bench.litserve_peer import start_peer
    from service.launcher import free_port

    peer = stack.enter_context(
        start_peer(
            model_id, free_port(), settings.max_new_tokens, max_batch_size, settings.peer_batch_timeout_s, log_dir,
            torch_threads=settings.torch_threads,
        )
    )
    info = {"max_batch_size": max_batch_size, "max_new_tokens": settings.max_new_tokens, "cold_start_s": round(peer.ready_seconds, 2)}
    return RunningServer(url=peer.url, path="/predict", info=info, pid=peer.process.pid)


def _level_requests(clients: int, max_batch_size: int, raw_throughput: dict[int, float], settings: BenchSettings) -> int:
    """Return the requests of one level: the configured count, or more where the level would end in under min_level_s."""
    base = settings.one_client_requests if clients == 1 else clients * settings.requests_per_client
    # Expected speed: raw generate at the largest batch size the server can form here.
    batch = max(size for size in raw_throughput if size <= max(1, min(clients, max_batch_size)))
    return max(base, math.ceil(settings.min_level_s * raw_throughput[batch]))


def _stage_breakdown(stats: LevelStats) -> dict[str, float]:
    """Return the median of each response timing and of the client-side remainder, in ms."""
    keys = ("decode_ms", "queue_ms", "preprocess_ms", "generate_ms", "map_ms", "total_ms")
    breakdown = {key: round(statistics.median(t.get(key, 0.0) for t in stats.timings), 1) for key in keys}
    remainders = [latency * 1000 - t.get("total_ms", 0.0) for latency, t in zip(stats.latencies_s, stats.timings, strict=True)]
    breakdown["outside_total_ms"] = round(statistics.median(remainders), 1)
    shares = [t["map_ms"] / t["total_ms"] for t in stats.timings if t.get("total_ms")]
    breakdown["map_share"] = round(statistics.median(shares), 4) if shares else float("nan")
    return breakdown


def bench_model(model_id: str, settings: BenchSettings, uploads: Sequence[tuple[str, bytes]], log_dir: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    """Measure one model: all servers up at once, levels interleaved with raw rounds.

    Servers start one after another, so each cold start is timed alone. Then
    every client count runs on each server in turn, followed by a raw round,
    so a change in machine load between levels hits all sides of a ratio.
    """
    echo(f"model {model_id}")
    raw = RawRunner(model_id, settings, uploads)
    raw.warm_up()
    raw.run_round()
    echo(f"  raw round 1: {raw.describe_last_round()}")
    best = max(raw.rounds.throughput().items(), key=lambda item: item[1])[0]
    max_batch_size = settings.max_batch_size or best
    echo(f"  servers batch up to {max_batch_size} (raw round 1 peaked at batch {best})")

    with contextlib.ExitStack() as stack:
        servers: dict[str, RunningServer] = {
            "service_adaptive": _start_service(stack, model_id, max_batch_size, settings, log_dir),
            "service_batch1": _start_service(stack, model_id, 1, settings, log_dir),
        }
        if not settings.skip_peer:
            servers["litserve"] = _start_peer(stack, model_id, max_batch_size, settings, log_dir)

        for name, server in servers.items():
            echo(f"  {name:<17} ready in {server.info['cold_start_s']:.1f} s")
            warmup = run_level(server.url, server.path, uploads, server.form, clients=2, max_requests=settings.warmup_requests, max_duration_s=settings.max_level_s)
            if warmup.ok == 0:
                raise RuntimeError(f"{name}: every warm-up request failed: {warmup.errors}")

        for round_number, clients in enumerate(CLIENT_COUNTS, start=2):
            for name, server in servers.items():
                requests = _level_requests(clients, server.info["max_batch_size"], raw.rounds.throughput(), settings)
                server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
                stats = run_level(server.url, server.path, uploads, server.form, clients=clients, max_requests=requests, max_duration_s=settings.max_level_s)
                stats.server_cpu_s = server.cpu_seconds() - server_cpu
                stats.client_cpu_s = time.process_time() - client_cpu
                stats.load_average = os.getloadavg()[0]
                server.levels[clients] = stats
                echo(
                    f"  {name:<17} {clients:>2} clients: {stats.throughput:8.3f} req/s  p50 {stats.latency_ms(50):8.1f} ms  "
                    f"p95 {stats.latency_ms(95):8.1f} ms  ok {stats.ok}/{stats.sent}  load {stats.load_average:.1f}  "
                    f"cpu/request server {stats.server_cpu_s * 1000 / max(stats.ok, 1):.1f} ms, clients {stats.client_cpu_s * 1000 / max(stats.ok, 1):.1f} ms"
                )
            raw.run_round()
            echo(f"  raw round {round_number}: {raw.describe_last_round()}")

    result: dict[str, Any] = {"model": model_id, "raw": raw.summary(), "servers": {}}
    for name, server in servers.items():
        entry = dict(server.info)
        entry.pop("max_new_tokens")
        entry["levels"] = {str(clients): stats.summary() for clients, stats in server.levels.items()}
        if name != "service_batch1" and server.levels[1].timings:
            entry["one_client_stages"] = _stage_breakdown(server.levels[1])
        result["servers"][name] = entry
    result["ratios"] = compute_ratios(result)
    return result


def machine_description(torch_threads: int) -> dict[str, Any]:
    import torch

    return {
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch_threads or torch.get_num_threads(),
    }


def run(settings: BenchSettings, json_path: Path | None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark, print the table and write the JSON; return the JSON document."""
    uploads = encode_samples()
    log_dir = Path(tempfile.mkdtemp(prefix="mllm-classify-bench-serve-"))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "settings": {
            key: (str(value) if isinstance(value, Path) else value) for key, value in vars(settings).items()
        },
        "machine": machine_description(settings.torch_threads),
        "load_average_start": os.getloadavg(),
        "models": [],
    }
    report["settings"]["models"] = list(settings.models)
    echo(f"server logs: {log_dir}")

    for name in settings.models:
        model_dir = settings.models_dir / name
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"model {model_dir} not found; build it with `mllm-classify build-models --out {settings.models_dir}`")
        report["models"].append(bench_model(str(model_dir), settings, uploads, log_dir, echo))

    report["load_average_end"] = os.getloadavg()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    echo(format_report(report))

    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        echo(f"wrote {json_path}")
    return report
