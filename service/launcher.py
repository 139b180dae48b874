"""Start the service in a subprocess on loopback and wait until it is ready.

Used by the demo, the tests, the load-test sweep and the benchmarks, so they
all run the real `bentoml serve` process the way users do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceStartError(RuntimeError):
    """Raised when the service process exits or does not become ready in time."""


@dataclass
class ServiceProcess:
    process: subprocess.Popen
    url: str
    grpc_target: str | None
    log_path: Path
    config_path: Path
    started_at: float
    ready_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """Send SIGTERM to the process group, then SIGKILL after timeout_s; return the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("service %d did not stop in %.0f s; killing it", self.process.pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


def _config_file(model_id: str, http_port: int, grpc_port: int | None, overrides: Mapping[str, Any] | None) -> Path:
    config: dict[str, Any] = {
        "model": {"model_id": model_id},
        "server": {"http_port": http_port, "grpc_enabled": grpc_port is not None},
    }
    if grpc_port is not None:
        config["server"]["grpc_port"] = grpc_port
    for section, values in (overrides or {}).items():
        config.setdefault(section, {}).update(values)
    handle = tempfile.NamedTemporaryFile("w", prefix="mllm-classify-", suffix=".yaml", delete=False)
    with handle:
        yaml.safe_dump(config, handle)
    return Path(handle.name)


@contextlib.contextmanager
def start_service(
    model_id: str,
    http_port: int | None = None,
    grpc_port: int | None = None,
    env: Mapping[str, str] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    ready_timeout_s: float = 240.0,
    log_dir: str | Path | None = None,
) -> Iterator[ServiceProcess]:
    """Run `bentoml serve service.service:Classifier` on 127.0.0.1 until the block exits."""
    http_port = http_port or free_port()
    config_path = _config_file(model_id, http_port, grpc_port, config_overrides)
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mllm-classify-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"service-{http_port}.log"

    # `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir when it
    # starts (ensure_prometheus_dir in bentoml/serving.py, 1.4.40), which wiped
    # the metric files of every other service running under the same home, so
    # each service gets a home of its own.
    bentoml_home = Path(tempfile.mkdtemp(prefix="mllm-classify-bentoml-"))
    child_env = dict(os.environ)
    child_env.update(
        {
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "MLLM_CLASSIFY_CONFIG": str(config_path),
            "PYTHONUNBUFFERED": "1",
        }
    )
    child_env.update(env or {})
    command = [
        sys.executable, "-m", "bentoml", "serve", "service.service:Classifier",
        "--host", "127.0.0.1", "--port", str(http_port),
    ]

    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=child_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = ServiceProcess(
        process=process,
        url=f"http://127.0.0.1:{http_port}",
        grpc_target=f"127.0.0.1:{grpc_port}" if grpc_port is not None else None,
        log_path=log_path,
        config_path=config_path,
        started_at=started,
    )
    try:
        service.ready_seconds = _wait_ready(service, ready_timeout_s)
        logger.info("service ready at %s in %.1f s (log %s)", service.url, service.ready_seconds, log_path)
        yield service
    finally:
        service.stop()
        config_path.unlink(missing_ok=True)
        shutil.rmtree(bentoml_home, ignore_errors=True)


def _wait_ready(service: ServiceProcess, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if service.process.poll() is not None:
            tail = service.log_text()[-4000:]
            raise ServiceStartError(f"service exited with code {service.process.returncode} before it was ready:\n{tail}")
        try:
            response = httpx.get(f"{service.url}/readyz", timeout=2.0)
            if response.status_code == 200:
                return time.perf_counter() - service.started_at
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    service.stop()
    raise ServiceStartError(f"service not ready within {timeout_s:.0f} s; log:\n{service.log_text()[-4000:]}")


def main() -> None:
    """Print the ready time of a service started with the model given as argument (a smoke check)."""
    model = sys.argv[1] if len(sys.argv) > 1 else "models/demo-llava"
    with start_service(model) as service:
        print(json.dumps({"url": service.url, "ready_seconds": round(service.ready_seconds, 2)}))


if __name__ == "__main__":
    main()
