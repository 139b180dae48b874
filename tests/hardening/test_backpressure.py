"""Backpressure and timeouts: past the in-flight limit 429 or RESOURCE_EXHAUSTED, slow requests time out.

The service here sleeps `batch_delay_s` in every model batch (a test-only
fault), so requests stay in flight long enough to fill the limit. The request
timeout is longer than one batch, so one-prompt requests and the gRPC warm-up
finish, but shorter than two, so a two-prompt request times out.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest

from service.grpc.client import GrpcClient, GrpcClientError
from service.launcher import free_port, start_service
from tests.hardening import crafted

pytestmark = pytest.mark.slow

MAX_CONCURRENCY = 4
BATCH_DELAY_S = 2.0
REQUEST_TIMEOUT_S = 3.0
IMAGE = crafted.encode(crafted.photo(), "PNG")


@pytest.fixture(scope="module")
def slow_service(models_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("slow-service")
    overrides = {
        "limits": {"max_concurrency": MAX_CONCURRENCY, "request_timeout_s": REQUEST_TIMEOUT_S, "retry_after_s": 1},
        "batching": {"max_batch_size": 2},
        "faults": {"batch_delay_s": BATCH_DELAY_S},
    }
    with start_service(
        str(models_dir / "demo-llava"),
        grpc_port=free_port(),
        env={"BENTOML_HOME": str(home / "bentoml")},
        config_overrides=overrides,
        log_dir=home,
    ) as process:
        with GrpcClient(process.grpc_target) as client:
            client.wait_for_serving(timeout_s=120)
        yield process


def post(url: str) -> httpx.Response:
    return httpx.post(f"{url}/classify", files={"image": ("a.png", IMAGE, "image/png")}, timeout=60)


def test_http_over_limit_gets_429(slow_service) -> None:
    count = 2 * MAX_CONCURRENCY
    barrier = threading.Barrier(count)

    def send(_: int) -> httpx.Response:
        barrier.wait()
        return post(slow_service.url)

    with ThreadPoolExecutor(max_workers=count) as pool:
        responses = list(pool.map(send, range(count)))

    rejected = [response for response in responses if response.status_code == 429]
    admitted = [response for response in responses if response.status_code != 429]
    assert len(rejected) == count - MAX_CONCURRENCY, [response.status_code for response in responses]
    for response in rejected:
        assert response.headers["Retry-After"] == "1"
        assert f"limit of {MAX_CONCURRENCY} images in flight" in response.json()["error"]
    # Admitted requests queue behind each other's batches, so the later ones may time out.
    for response in admitted:
        assert response.status_code in (200, 504), response.text


def test_http_request_timeout_gets_504(slow_service) -> None:
    # Without candidates the choice protocol sends two prompts, one batch each.
    response = httpx.post(
        f"{slow_service.url}/classify",
        files={"image": ("a.png", IMAGE, "image/png")},
        data={"protocol": "choice"},
        timeout=60,
    )

    assert response.status_code == 504, response.text
    assert f"did not finish within {REQUEST_TIMEOUT_S:g} s" in response.json()["error"]


def test_grpc_over_limit_resource_exhausted(slow_service) -> None:
    count = 2 * MAX_CONCURRENCY
    barrier = threading.Barrier(count)

    def send(_: int) -> str:
        with GrpcClient(slow_service.grpc_target, max_attempts=1) as client:
            barrier.wait()
            try:
                client.classify(IMAGE)
            except GrpcClientError as error:
                if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert error.retry_after_s == 1
                return error.code.name
        return "OK"

    with ThreadPoolExecutor(max_workers=count) as pool:
        codes = list(pool.map(send, range(count)))

    assert codes.count("RESOURCE_EXHAUSTED") == count - MAX_CONCURRENCY, codes
    assert set(codes) <= {"RESOURCE_EXHAUSTED", "OK", "DEADLINE_EXCEEDED"}, codes


def test_grpc_client_deadline_bounds_request(slow_service) -> None:
    started = time.perf_counter()
    with GrpcClient(slow_service.grpc_target, timeout=0.5, max_attempts=1) as client:
        with pytest.raises(GrpcClientError) as raised:
            client.classify(IMAGE)

    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < BATCH_DELAY_S


def test_service_keeps_serving_after_overload(slow_service) -> None:
    # Wait for the abandoned batches to drain, then the limit admits requests again.
    time.sleep(2 * BATCH_DELAY_S)

    assert httpx.get(f"{slow_service.url}/readyz", timeout=10).status_code == 200
    response = post(slow_service.url)
    assert response.status_code == 200, response.text
    assert slow_service.process.poll() is None
