"""A LitServe server for the same Engine as the service: the peer in `bench serve`.

It does the same work per request as `POST /classify` on the open protocol:
decode the upload, build the prompt, one batched `generate`, parse and map.
LitServe's own batcher (max_batch_size, batch_timeout) forms the model batches,
so the benchmark compares two serving layers around one Engine.

Run: `python -m bench.litserve_peer --model models/bench-llava --port 8010`;
`POST /predict` takes a multipart `image` field and returns ClassifyResult JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import litserve as ls
from PIL import Image

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class EngineAPI(ls.LitAPI):
    """Classify one uploaded image per request with the open protocol, in LitServe batches."""

    def __init__(
        self, model_id: str, max_new_tokens: int, max_batch_size: int, batch_timeout_s: float, torch_threads: int = 0
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.model_id = model_id
        self.max_new_tokens = max_new_tokens
        self.torch_threads = torch_threads

    def setup(self, device: str) -> None:
        from service.config import load_config
        from service.engine import Engine
        from service.schemas import ClassifyParams

        config = load_config(
            environ={
                "MLLM_CLASSIFY_MODEL__MODEL_ID": self.model_id,
                "MLLM_CLASSIFY_MODEL__MAX_NEW_TOKENS": str(self.max_new_tokens),
                "MLLM_CLASSIFY_MODEL__TORCH_THREADS": str(self.torch_threads),
            }
        )
        self.engine = Engine(config)
        self.params = ClassifyParams(protocol="open", max_new_tokens=self.max_new_tokens)

    # LitServe reads the annotations of `request` and of the return value to
    # build the route, and treats none as a raw Request and Response. With
    # postponed annotations they would arrive as strings, so both stay bare.
    def decode_request(self, request):  # noqa: ANN001, ANN201
        # A multipart request arrives as its parsed form.
        upload = request["image"]
        image = Image.open(io.BytesIO(upload.file.read()))
        image.load()
        return image

    def predict(self, images: list[Image.Image]) -> list[dict]:
        results = self.engine.classify_batch(images, [self.params] * len(images))
        return [result.model_dump(mode="json") for result in results]

    def encode_response(self, output):  # noqa: ANN001, ANN201
        return output


@dataclass
class PeerProcess:
    process: subprocess.Popen
    url: str
    log_path: Path
    ready_seconds: float = 0.0


@contextlib.contextmanager
def start_peer(
    model_id: str,
    port: int,
    max_new_tokens: int,
    max_batch_size: int,
    batch_timeout_s: float,
    log_dir: Path,
    torch_threads: int = 0,
    ready_timeout_s: float = 240.0,
) -> Iterator[PeerProcess]:
    """Run the peer on 127.0.0.1:port in a subprocess until the block exits; wait for /health to return 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"litserve-{port}.log"
    command = [
        sys.executable, "-m", "bench.litserve_peer", "--model", model_id, "--port", str(port),
        "--max-new-tokens", str(max_new_tokens), "--max-batch-size", str(max_batch_size),
        "--batch-timeout", str(batch_timeout_s), "--torch-threads", str(torch_threads),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")

    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    peer = PeerProcess(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        peer.ready_seconds = _wait_healthy(peer, started, ready_timeout_s)
        yield peer
    finally:
        _stop(process)


def _wait_healthy(peer: PeerProcess, started: float, timeout_s: float) -> float:
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if peer.process.poll() is not None:
            tail = peer.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"LitServe peer exited with code {peer.process.returncode} before it was ready:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{peer.url}/health", timeout=2.0, trust_env=False).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.25)
    raise RuntimeError(f"LitServe peer not ready within {timeout_s:.0f} s; log: {peer.log_path}")


def _stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("LitServe peer %d did not stop in %.0f s; killing it", process.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the classification Engine with LitServe on 127.0.0.1.")
    parser.add_argument("--model", required=True, help="Model directory or hub id.")
    parser.add_argument("--port", type=int, default=8010, help="HTTP port on 127.0.0.1.")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="Tokens generated per answer.")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Images per model batch.")
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="Seconds LitServe waits to fill a batch.")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default.")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = EngineAPI(args.model, args.max_new_tokens, args.max_batch_size, args.batch_timeout, args.torch_threads)
    # One inference worker, like the service's one BentoML worker; a 120 s
    # request timeout, like the service's limits.request_timeout_s.
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
