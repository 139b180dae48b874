"""HTTP clients that disconnect: their prompts leave the queue instead of running through the model."""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from service.launcher import start_service
from tests.hardening import crafted

pytestmark = pytest.mark.slow

BATCH_DELAY_S = 0.5
ABANDONED = 6
IMAGE = crafted.encode(crafted.photo(), "PNG")


def metric_total(url: str, name: str, **labels: str) -> float:
    """Sum the samples of one metric whose labels include `labels`."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$", text, re.MULTILINE):
        if all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def send_and_close(url: str) -> None:
    """Send a whole upload on a raw socket, then close it without reading the response."""
    request = httpx.Request("POST", f"{url}/classify", files={"image": ("a.png", IMAGE, "image/png")})
    body = request.read()
    parts = urlsplit(url)
    head = ["POST /classify HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in request.headers.items() if name.lower() not in ("host", "content-length")]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        time.sleep(0.05)


def test_disconnected_requests_skip_the_model(models_dir, tmp_path) -> None:
    overrides = {
        "batching": {"max_batch_size": 1},
        "faults": {"batch_delay_s": BATCH_DELAY_S},
        "server": {"grpc_enabled": False},
    }
    with start_service(str(models_dir / "demo-llava"), config_overrides=overrides, log_dir=tmp_path) as service:
        batches_before = metric_total(service.url, "mllm_classify_batch_size_images_count")

        for _ in range(ABANDONED):
            send_and_close(service.url)
        # The first abandoned prompt may already be in the model; the others are
        # noticed within a poll interval and leave the queue before their turn.
        time.sleep(BATCH_DELAY_S * 4)
        good = httpx.post(f"{service.url}/classify", files={"image": ("a.png", IMAGE, "image/png")}, timeout=60)

        batches = metric_total(service.url, "mllm_classify_batch_size_images_count") - batches_before
        disconnected = metric_total(service.url, "mllm_classify_errors_total", reason="client_disconnected", transport="http")
        in_flight = metric_total(service.url, "mllm_classify_requests_in_flight")
        log_text = service.log_text()

    assert good.status_code == 200, good.text
    assert batches <= 3, f"{batches} batches ran for {ABANDONED} abandoned requests and one good one"
    assert disconnected >= ABANDONED - 2
    assert in_flight == 0
    assert "client disconnected, work cancelled" in log_text
