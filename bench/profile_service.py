"""Profile the service under load with py-spy: where does a request's CPU time go?

Starts the service on 127.0.0.1 (torch_threads=1, grpc off), loads it with N
closed-loop clients for a bounded number of requests, records the worker
process with `py-spy record --format raw` meanwhile, and prints the functions
with the most samples, inclusive, over all threads.

Run: `python -m bench.profile_service --model models/tiny-llava --clients 32 --requests 96`.
Needs py-spy (`pip install py-spy`) and permission to ptrace the child process.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from bench.serve_bench import encode_samples
from bench.serve_load import run_level
from service.launcher import start_service


def _worker_pid(service_pid: int) -> int:
    """Return the pid of the BentoML worker that loads the model (the child with the most memory)."""
    children = psutil.Process(service_pid).children(recursive=True)
    return max(children, key=lambda child: child.memory_info().rss).pid


def _top_functions(raw_path: Path, limit: int) -> list[tuple[str, int, int]]:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        # Count each function once per stack, so recursion does not inflate it.
        for frame in set(stack.split(";")):
            inclusive[frame] += count
    return [(frame, count, total) for frame, count in inclusive.most_common(limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/tiny-llava", help="Model directory.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent closed-loop clients.")
    parser.add_argument("--requests", type=int, default=96, help="Requests in the profiled level.")
    parser.add_argument("--max-batch-size", type=int, default=32, help="The service's batching.max_batch_size.")
    parser.add_argument("--duration", type=int, default=20, help="Seconds py-spy records.")
    parser.add_argument("--top", type=int, default=45, help="Functions to print.")
    parser.add_argument("--gil", action="store_true", help="Sample only the thread holding the GIL (py-spy --gil).")
    args = parser.parse_args()

    uploads = encode_samples()
    overrides = {
        "batching": {"max_batch_size": args.max_batch_size, "max_latency_ms": 600000},
        "server": {"grpc_enabled": False},
        "model": {"max_new_tokens": 8, "torch_threads": 1},
    }
    form = {"protocol": "open", "max_new_tokens": "8"}
    with start_service(args.model, config_overrides=overrides) as service:
        run_level(service.url, "/classify", uploads, form, clients=4, max_requests=8, max_duration_s=120)
        raw_path = Path(tempfile.mkdtemp(prefix="mllm-classify-profile-")) / "service.txt"
        recorder = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(_worker_pid(service.pid)), "--duration", str(args.duration),
             "--format", "raw", "--threads", "--output", str(raw_path), "--nonblocking", *(["--gil"] if args.gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        load = threading.Thread(
            target=run_level,
            args=(service.url, "/classify", uploads, form),
            kwargs={"clients": args.clients, "max_requests": args.requests, "max_duration_s": args.duration + 60},
        )
        load.start()
        recorder.wait(timeout=args.duration + 60)
        load.join()

    print(f"py-spy raw stacks: {raw_path}")
    for frame, count, total in _top_functions(raw_path, args.top):
        print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
