"""Optional API key for the gRPC API, checked by a server interceptor.

The key is the HTTP API's (`config.api_key()`), sent as call metadata
`authorization: Bearer <key>` or `x-api-key: <key>` and compared in constant
time by `service.auth.key_matches`. Health checking and reflection stay open so
that orchestrators and tools such as grpcurl can probe without the key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from service.auth import extract_key, key_matches
from service.grpc.metrics import GRPC_REQUESTS

logger = logging.getLogger("mllm_classify.grpc")

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

MISSING_KEY_MESSAGE = "missing or invalid API key; send metadata authorization: Bearer <key>"


def _split_method(full_method: str) -> tuple[str, str]:
    # "/mllm_classify.v1.Classifier/Classify" -> ("mllm_classify.v1.Classifier", "Classify")
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def _rejecting_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Return a handler of the same streaming kind that ends the call with UNAUTHENTICATED."""

    async def reject(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, MISSING_KEY_MESSAGE)

    async def reject_streaming(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, MISSING_KEY_MESSAGE)
        yield  # pragma: no cover - makes this an async generator, as response-streaming handlers are

    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(reject_streaming, **codecs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(reject, **codecs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(reject_streaming, **codecs)
    return grpc.unary_unary_rpc_method_handler(reject, **codecs)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, expected_key: str) -> None:
        self.expected_key = expected_key
        self.rejected = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service, method = _split_method(handler_call_details.method)
        if handler is None or service in OPEN_SERVICES:
            return handler

        # Metadata keys arrive lowercased; binary (-bin) values cannot hold a key.
        metadata = {
            key: value
            for key, value in (handler_call_details.invocation_metadata or ())
            if isinstance(value, str)
        }
        if key_matches(extract_key(metadata), self.expected_key):
            return handler

        self.rejected += 1
        GRPC_REQUESTS.labels(method=method, code=grpc.StatusCode.UNAUTHENTICATED.name).inc()
        # Count repeats instead of logging each one: a scanner can send thousands.
        if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
            logger.warning("rejected %d gRPC calls without a valid API key (last method %s)", self.rejected, method)
        return _rejecting_handler(handler)
