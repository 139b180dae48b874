"""Faults under concurrency: a failing model batch and a corrupt image fail only their own requests."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.grpc.client import GrpcClient, GrpcClientError
from tests.hardening import crafted
from tests.hardening.conftest import API_KEY

pytestmark = pytest.mark.slow

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def post_image(url: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/classify", files={"image": ("a.png", data, "image/png")}, headers=HEADERS, timeout=120)


def test_failed_batch_fails_only_its_requests(hardened_service, demo_photos) -> None:
    url = hardened_service.url
    # The gRPC warm-up request must not take the injected fault.
    with GrpcClient(hardened_service.grpc_target, api_key=API_KEY) as client:
        client.wait_for_serving(timeout_s=120)
    assert post_image(url, demo_photos["cat"]).status_code == 200
    log_before = len(hardened_service.process.log_text())

    hardened_service.fail_batch_file.write_text("fail the next batch\n")
    images = [demo_photos[name] for name in ("cat", "coffee", "rocket", "cat", "coffee", "rocket")]
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        responses = list(pool.map(lambda data: post_image(url, data), images))

    statuses = [response.status_code for response in responses]
    failed = [response.json() for response in responses if response.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert failed, f"no request failed: {statuses}"
    assert 200 in statuses, "every request failed, not one batch"
    assert not hardened_service.fail_batch_file.exists()
    for body in failed:
        assert "the model failed on the batch" in body["error"]

    # One logged error names exactly the requests that got 503.
    time.sleep(0.5)
    log = hardened_service.process.log_text()[log_before:]
    lines = [line for line in log.splitlines() if "backend failed on a batch of" in line]
    assert len(lines) == 1, lines
    batch_size = int(re.search(r"batch of (\d+)", lines[0]).group(1))
    assert batch_size == len(failed)
    for body in failed:
        assert body["request_id"] in lines[0]

    # The next batch succeeds without a restart.
    pid_before = hardened_service.process.pid
    assert post_image(url, demo_photos["rocket"]).status_code == 200
    assert hardened_service.process.process.poll() is None
    assert hardened_service.process.pid == pid_before


def test_corrupt_image_fails_alone(hardened_service, demo_photos) -> None:
    url = hardened_service.url
    corrupt = crafted.truncated(crafted.encode(crafted.photo((256, 192)), "JPEG"))
    uploads = [("good", demo_photos[name]) for name in ("cat", "coffee", "rocket", "cat", "coffee")]
    uploads.insert(2, ("corrupt", corrupt))

    def send_http(item: tuple[str, bytes]) -> tuple[str, int]:
        kind, data = item
        return kind, post_image(url, data).status_code

    def send_grpc(item: tuple[str, bytes]) -> tuple[str, str]:
        kind, data = item
        with GrpcClient(hardened_service.grpc_target, api_key=API_KEY, max_attempts=1) as client:
            try:
                client.classify(data)
            except GrpcClientError as error:
                return kind, error.code.name
        return kind, "OK"

    with ThreadPoolExecutor(max_workers=2 * len(uploads)) as pool:
        http_futures = [pool.submit(send_http, item) for item in uploads]
        grpc_futures = [pool.submit(send_grpc, item) for item in uploads]
        http_outcomes = [future.result() for future in http_futures]
        grpc_outcomes = [future.result() for future in grpc_futures]

    assert [status for kind, status in http_outcomes if kind == "good"] == [200] * 5
    assert [status for kind, status in http_outcomes if kind == "corrupt"] == [400]
    assert [code for kind, code in grpc_outcomes if kind == "good"] == ["OK"] * 5
    assert [code for kind, code in grpc_outcomes if kind == "corrupt"] == ["INVALID_ARGUMENT"]
