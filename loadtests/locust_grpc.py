"""Locust user class for the gRPC API, defined only where the gRPC client is installed.

`GrpcClassifyUser` is None when `service.grpc.client` cannot be imported, so
locustfiles work in installs without gRPC. grpcio needs its gevent
integration (`grpc.experimental.gevent.init_gevent`) before the first channel
opens, or its calls would block Locust's event loop. Only Locust processes import
this module.
"""

from __future__ import annotations

import random
import time

from locust import User, between, task

from loadtests import locust_hooks  # noqa: F401  (registers --grpc-target and the loopback check)
from loadtests.payloads import sample_jpegs

try:
    import grpc
    import grpc.experimental.gevent as grpc_gevent

    from service.grpc.client import GrpcClient, GrpcClientError
    from service.schemas import ClassifyParams
except ImportError:
    GrpcClient = None

if GrpcClient is None:
    GrpcClassifyUser = None
else:
    grpc_gevent.init_gevent()

    class GrpcClassifyUser(User):
        """One open-protocol Classify call at a time over gRPC, reported as request type "grpc"."""

        wait_time = between(0.2, 1.0)

        def on_start(self) -> None:
            target = self.environment.parsed_options.grpc_target
            if not target:
                raise ValueError("GrpcClassifyUser needs --grpc-target 127.0.0.1:PORT")
            # No client-side retries, so every failed call shows up in the statistics.
            self.grpc_client = GrpcClient(target, max_attempts=1)

        def on_stop(self) -> None:
            self.grpc_client.close()

        @task
        def classify_open(self) -> None:
            _, image = random.choice(sample_jpegs())
            started = time.perf_counter()
            exception: Exception | None = None
            response_length = 0
            try:
                result = self.grpc_client.classify(image, ClassifyParams(protocol="open", top_k=3))
                response_length = len(result.model_dump_json())
            except (GrpcClientError, grpc.RpcError, OSError) as error:
                exception = error
            self.environment.events.request.fire(
                request_type="grpc",
                name="Classify open",
                response_time=(time.perf_counter() - started) * 1000.0,
                response_length=response_length,
                exception=exception,
                context={},
            )
