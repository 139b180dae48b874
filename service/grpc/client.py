"""Typed, blocking gRPC client with the methods of `service.client.HttpClient`.

    with GrpcClient("127.0.0.1:50051") as client:
        result = client.classify("cat.jpg", ClassifyParams(top_k=3))

gRPC's own retry policy retries calls that end with UNAVAILABLE, such as calls
made while the service warms up, up to `max_attempts` tries in all. Other
errors raise GrpcClientError at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc import convert
from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc
from service.schemas import ClassifyParams, ClassifyResult, TaxonomyInfo

ImageInput = bytes | str | Path

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class GrpcClientError(RuntimeError):
    """Raised for a failed call or stream item; carries the gRPC status code and the error details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field: str | None = None,
        request_id: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.request_id = request_id
        self.retry_after_s = retry_after_s

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> GrpcClientError:
        trailing = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
        retry_after = trailing.get("retry-after")
        return cls(
            error.code(),  # type: ignore[attr-defined]
            error.details() or "",  # type: ignore[attr-defined]
            field=trailing.get("error-field"),
            request_id=trailing.get("request-id"),
            retry_after_s=int(retry_after) if retry_after else None,
        )

    @classmethod
    def from_item_error(cls, request_id: str, item: pb.ItemError) -> GrpcClientError:
        code = next((code for code in grpc.StatusCode if code.value[0] == item.code), grpc.StatusCode.UNKNOWN)
        return cls(code, item.message, item.field or None, request_id, item.retry_after_s or None)


def _image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, bytes):
        return image
    return Path(image).read_bytes()


def _retry_service_config(max_attempts: int) -> str:
    # gRPC's retry policy (gRFC A6): exponential backoff with jitter, capped at 2 s.
    policy = {
        "methodConfig": [
            {
                "name": [{"service": "mllm_classify.v1.Classifier"}],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    return json.dumps(policy)


class GrpcClient:
    """Blocking client over one insecure channel; reuse it, because the channel is one connection."""

    def __init__(
        self,
        target: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_attempts: int = 5,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if max_attempts > 1:
            options += [("grpc.enable_retries", 1), ("grpc.service_config", _retry_service_config(min(max_attempts, 5)))]
        else:
            options.append(("grpc.enable_retries", 0))

        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.ClassifierStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def classify(
        self, image: ImageInput, params: ClassifyParams | None = None, request_id: str | None = None
    ) -> ClassifyResult:
        request = pb.ClassifyRequest(
            image=_image_bytes(image), params=convert.params_to_proto(params), request_id=request_id or ""
        )
        try:
            response = self._stub.Classify(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise GrpcClientError.from_rpc_error(error) from None
        return convert.result_from_proto(response.result)

    def classify_batch(self, images: Sequence[ImageInput], params: ClassifyParams | None = None) -> list[ClassifyResult]:
        """Classify images over one stream; results keep the input order, and the first failed item raises."""
        request_ids = [uuid.uuid4().hex for _ in images]
        outcomes = dict(self.classify_stream((rid, image, params) for rid, image in zip(request_ids, images, strict=True)))
        results = []
        for request_id in request_ids:
            outcome = outcomes[request_id]
            if isinstance(outcome, GrpcClientError):
                raise outcome
            results.append(outcome)
        return results

    def classify_stream(
        self, items: Iterable[tuple[str, ImageInput, ClassifyParams | None]]
    ) -> Iterator[tuple[str, ClassifyResult | GrpcClientError]]:
        """Send (request_id, image, params) items over one stream; yield (request_id, result or error) as they finish.

        The timeout covers the whole stream. An error that ends the stream
        itself (deadline, authentication, shutdown) raises GrpcClientError.
        """

        def requests() -> Iterator[pb.ClassifyStreamRequest]:
            for request_id, image, params in items:
                yield pb.ClassifyStreamRequest(
                    request_id=request_id, image=_image_bytes(image), params=convert.params_to_proto(params)
                )

        responses = self._stub.ClassifyStream(requests(), timeout=self.timeout, metadata=self._metadata)
        try:
            for response in responses:
                if response.HasField("error"):
                    yield response.request_id, GrpcClientError.from_item_error(response.request_id, response.error)
                else:
                    yield response.request_id, convert.result_from_proto(response.result)
        except grpc.RpcError as error:
            raise GrpcClientError.from_rpc_error(error) from None
        finally:
            responses.cancel()

    def taxonomies(self) -> list[TaxonomyInfo]:
        try:
            response = self._stub.ListTaxonomies(pb.ListTaxonomiesRequest(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise GrpcClientError.from_rpc_error(error) from None
        return [convert.taxonomy_from_proto(info) for info in response.taxonomies]

    def wait_for_serving(self, timeout_s: float = 60.0, service: str = "") -> None:
        """Poll health until SERVING; raise GrpcClientError with DEADLINE_EXCEEDED after timeout_s."""
        deadline = time.monotonic() + timeout_s
        last = "UNKNOWN"
        while time.monotonic() < deadline:
            try:
                last = self.health(service)
            except GrpcClientError as error:
                last = error.code.name
            if last == "SERVING":
                return
            time.sleep(0.1)
        raise GrpcClientError(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"{self.target} not SERVING after {timeout_s:g} s; last status {last}"
        )

    def health(self, service: str = "") -> str:
        """Return the health status name (SERVING, NOT_SERVING, ...) of the server or of one service."""
        try:
            response = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as error:
            raise GrpcClientError.from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
