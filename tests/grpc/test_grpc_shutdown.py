"""Graceful shutdown: health turns NOT_SERVING and a stream in progress still finishes."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc.client import GrpcClient
from service.launcher import free_port, start_service
from service.schemas import ClassifyResult

pytestmark = pytest.mark.slow

STREAM_IMAGES = 24


def _watch_health(target: str, statuses: list[str], stop: threading.Event) -> None:
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError as error:
                statuses.append(error.code().name)
                if error.code() == grpc.StatusCode.UNAVAILABLE and "NOT_SERVING" in statuses:
                    return
            else:
                statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
            time.sleep(0.02)


def test_shutdown_drains_stream(demo_model, photos):
    names = list(photos)
    items = [(f"drain-{index}", photos[names[index % len(names)]], None) for index in range(STREAM_IMAGES)]
    outcomes = []
    statuses: list[str] = []
    stop_watching = threading.Event()

    # Each batch sleeps first, so the stream is still running when shutdown
    # begins: the demo model alone classifies 24 images in a fraction of a second.
    overrides = {"faults": {"batch_delay_s": 0.5}}
    with start_service(demo_model, grpc_port=free_port(), ready_timeout_s=420, config_overrides=overrides) as service:
        with GrpcClient(service.grpc_target, max_attempts=1) as client:
            client.wait_for_serving(timeout_s=120)
            stream = client.classify_stream(items)
            outcomes.append(next(stream))

            # SIGTERM to the BentoML arbiter alone, as a container runtime sends it.
            os.kill(service.pid, signal.SIGTERM)
            watcher = threading.Thread(target=_watch_health, args=(service.grpc_target, statuses, stop_watching))
            watcher.start()
            outcomes.extend(stream)
            stop_watching.set()
            watcher.join(timeout=10)
        exit_code = service.process.wait(timeout=120)

    assert len(outcomes) == STREAM_IMAGES
    assert all(isinstance(outcome, ClassifyResult) for _, outcome in outcomes), outcomes
    assert {request_id for request_id, _ in outcomes} == {request_id for request_id, _, _ in items}
    assert "NOT_SERVING" in statuses, statuses
    assert "SERVING" not in statuses[statuses.index("NOT_SERVING"):], statuses
    assert exit_code == 0
