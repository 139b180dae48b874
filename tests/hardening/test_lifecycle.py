"""Lifecycle: SIGTERM lets HTTP requests in flight finish, and a model that fails to load stops startup."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.launcher import ServiceStartError, start_service
from tests.hardening import crafted

pytestmark = pytest.mark.slow

BATCH_DELAY_S = 2.0
IMAGE = crafted.encode(crafted.photo(), "PNG")


def wait_in_flight(url: str, count: int, timeout_s: float) -> None:
    """Poll /metrics until the service reports `count` requests in flight."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mllm_classify_requests_in_flight" and sample.value >= count:
                    return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} requests in flight after {timeout_s} s")


def test_sigterm_finishes_requests_in_flight(models_dir, tmp_path) -> None:
    overrides = {"faults": {"batch_delay_s": BATCH_DELAY_S}, "server": {"grpc_enabled": False}}
    env = {"BENTOML_HOME": str(tmp_path / "bentoml")}
    with start_service(str(models_dir / "demo-llava"), env=env, config_overrides=overrides, log_dir=tmp_path) as service:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [
                pool.submit(
                    httpx.post, f"{service.url}/classify", files={"image": ("a.png", IMAGE, "image/png")}, timeout=60
                )
                for _ in range(3)
            ]
            # Signal only once all three are inside the service: their batch
            # then sleeps BATCH_DELAY_S, so they are still in flight.
            wait_in_flight(service.url, 3, timeout_s=60)
            os.kill(service.pid, signal.SIGTERM)
            responses = [future.result() for future in futures]
        exit_code = service.process.wait(timeout=60)

        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{service.url}/readyz", timeout=5)

    assert [response.status_code for response in responses] == [200, 200, 200], [r.text for r in responses]
    assert exit_code == 0
    assert "Traceback" not in service.log_text()


def test_bad_model_path_stops_startup(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    env = {"BENTOML_HOME": str(tmp_path / "bentoml")}
    overrides = {"server": {"grpc_enabled": False}}

    started = time.perf_counter()
    with pytest.raises(ServiceStartError) as raised:
        with start_service(str(missing), env=env, config_overrides=overrides, log_dir=tmp_path, ready_timeout_s=180):
            pass

    message = str(raised.value)
    assert "exited with code" in message
    assert str(missing) in message
    assert time.perf_counter() - started < 180
