"""The grpc.aio server that runs inside each BentoML worker, beside the HTTP API.

BentoML 1.4 serves new-style services over HTTP only, so `Classifier.start_grpc`
(an `@bentoml.on_startup` hook) calls `start_grpc_server` and the shutdown hook
calls `GrpcServer.stop`. Every worker binds the same port with SO_REUSEPORT and
the kernel spreads connections across them.

Health (`grpc.health.v1`) for both "" and the service name:

- NOT_SERVING from bind until the service is ready. The startup hooks run
  after `Classifier.__init__` has loaded the model, and then a background
  task waits for `classifier.ready` and sends one warm-up image through
  `classify_images`. Health turns SERVING only when that image comes back,
  which proves the whole path: decode, batcher, model and mapping.
- NOT_SERVING again from the start of shutdown while calls in progress drain.

Classifier calls made while health is NOT_SERVING end with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from service.config import Config
from service.grpc.auth import ApiKeyInterceptor
from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc
from service.grpc.servicer import ClassifierServicer, ServingState
from service.schemas import ClassifyParams

logger = logging.getLogger("mllm_classify.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Classifier"].full_name

# Seconds between checks for the worker to finish starting, and the longest
# wait between warm-up retries after a failure.
READY_POLL_S = 0.05
MAX_WARMUP_BACKOFF_S = 30.0

# Health Watch streams never end by themselves, so once the classifier calls
# have drained, whatever is left gets this many seconds before it is cancelled.
FINAL_STOP_GRACE_S = 1.0


def _warmup_image() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def server_options(config: Config) -> list[tuple[str, int]]:
    return [
        # Several BentoML workers bind the same port.
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", config.server.grpc_max_message_bytes),
        ("grpc.max_send_message_length", config.server.grpc_max_message_bytes),
    ]


@dataclass
class GrpcServer:
    """A started server; `stop` drains it."""

    server: grpc.aio.Server
    servicer: ClassifierServicer
    health: HealthServicer
    address: str
    classifier: Any
    ready_task: asyncio.Task | None = field(default=None, repr=False)

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def become_ready(self) -> None:
        """Wait for the worker to finish starting, warm up through the batcher, then report SERVING."""
        while not getattr(self.classifier, "ready", False):
            await asyncio.sleep(READY_POLL_S)

        image = _warmup_image()
        backoff_s = 1.0
        attempt = 1
        while True:
            try:
                await self.classifier.classify_images(
                    [image], ClassifyParams(), transport="warmup", request_ids=[f"grpc-warmup-{os.getpid()}-{attempt}"]
                )
                break
            except Exception as error:  # noqa: BLE001 - any failure keeps health at NOT_SERVING
                logger.error("gRPC warm-up request %d failed, retrying in %.0f s: %s", attempt, backoff_s, error)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_WARMUP_BACKOFF_S)
                attempt += 1

        if self.servicer.state is ServingState.STARTING:
            self.servicer.state = ServingState.SERVING
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            logger.info("gRPC health is SERVING on %s (pid %d)", self.address, os.getpid())

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, let classifier calls in progress finish for up to `grace` seconds, then stop."""
        self.servicer.state = ServingState.DRAINING
        if self.ready_task is not None:
            self.ready_task.cancel()
        await self.health.enter_graceful_shutdown()

        active = self.servicer.active_calls
        logger.info("gRPC server on %s draining %d calls for up to %s s", self.address, active, grace)
        if not await self.servicer.wait_idle(grace if grace is not None else float("inf")):
            logger.warning("gRPC calls still running after %s s of draining; cancelling %d", grace, self.servicer.active_calls)
        await self.server.stop(FINAL_STOP_GRACE_S)
        logger.info("gRPC server on %s stopped", self.address)


async def start_grpc_server(classifier: Any, config: Config) -> GrpcServer:
    """Bind and start the gRPC server for one worker; health stays NOT_SERVING until ready."""
    # BentoML 1.4.40 sets the root logger to WARNING in server processes
    # (bentoml/_internal/log.py), which would hide the start, ready and stop lines.
    if logger.level == logging.NOTSET and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)

    api_key = config.api_key()
    interceptors = [ApiKeyInterceptor(api_key)] if api_key else []
    server = grpc.aio.server(options=server_options(config), interceptors=interceptors)

    servicer = ClassifierServicer(classifier, config)
    pb_grpc.add_ClassifierServicer_to_server(servicer, server)

    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )

    address = f"{config.server.host}:{config.server.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as error:
        raise RuntimeError(f"cannot bind the gRPC server to {address}: {error}; set server.grpc_port to a free port") from error
    await server.start()
    logger.info(
        "gRPC server listening on %s (pid %d, max message %d bytes, API key %s)",
        address,
        os.getpid(),
        config.server.grpc_max_message_bytes,
        "required" if api_key else "not required",
    )

    handle = GrpcServer(server=server, servicer=servicer, health=health, address=address, classifier=classifier)
    handle.ready_task = asyncio.create_task(handle.become_ready())
    return handle
