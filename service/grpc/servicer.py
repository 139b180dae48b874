"""The `mllm_classify.v1.Classifier` servicer: every call goes through `Classifier.classify_images`.

That is the path HTTP requests take too: the same parameter checks, the same
image decoding and limits, and the same adaptive batcher, so gRPC and HTTP
requests share model batches.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import grpc

from service.config import Config
from service.errors import ServiceError, invalid_parameter, not_ready, shutting_down, timed_out
from service.grpc import convert
from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc
from service.grpc.metrics import GRPC_REQUEST_LATENCY, GRPC_REQUESTS

logger = logging.getLogger("mllm_classify.grpc")

T = TypeVar("T")

TRANSPORT = "grpc"

# Client-chosen request ids end up in the service log and in error metadata,
# so they are kept short and free of spaces and control characters.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:/-]{1,128}")

# HTTP statuses of ServiceError and the gRPC codes that carry the same meaning;
# any other status becomes INTERNAL.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class ServingState(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


def status_code_for(error: ServiceError) -> grpc.StatusCode:
    return STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL)


def error_metadata(error: ServiceError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata with the fields of the HTTP error body, for clients that need more than the message."""
    pairs = []
    if error.field:
        pairs.append(("error-field", error.field))
    if error.request_id:
        pairs.append(("request-id", error.request_id))
    if error.retry_after_s is not None:
        pairs.append(("retry-after", str(error.retry_after_s)))
    return tuple(pairs)


def _check_request_id(request_id: str) -> None:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise invalid_parameter(
            "request_id must be 1 to 128 characters of letters, digits and . _ : / -",
            "request_id",
        )


class ClassifierServicer(pb_grpc.ClassifierServicer):
    """Handle the v1 API calls; `state` gates them until the service is ready."""

    def __init__(self, classifier: Any, config: Config) -> None:
        self.classifier = classifier
        self.config = config
        self.state = ServingState.STARTING
        self.active_calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

        # One stream works on at most this many images at once and reads no
        # further messages until one finishes, so gRPC flow control slows a bulk
        # client down before it could hit the concurrency cap on its own.
        self.stream_window = min(config.limits.max_images_per_request, config.limits.max_concurrency)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no call is in progress; return False when timeout_s ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    # -- API methods --------------------------------------------------------

    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        async def work() -> pb.ClassifyResponse:
            request_id = request.request_id or uuid.uuid4().hex
            if request.request_id:
                _check_request_id(request_id)
            self._check_serving(request_id)
            result = await self._classify(request.image, request.params, request_id, context)
            return pb.ClassifyResponse(result=convert.result_to_proto(result))

        return await self._handle("Classify", context, work)

    async def ClassifyStream(
        self, request_iterator: AsyncIterator[pb.ClassifyStreamRequest], context: grpc.aio.ServicerContext
    ) -> None:
        async def work() -> None:
            self._check_serving()
            await _StreamRun(self, request_iterator, context).run()

        await self._handle("ClassifyStream", context, work)

    async def ListTaxonomies(
        self, request: pb.ListTaxonomiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTaxonomiesResponse:
        async def work() -> pb.ListTaxonomiesResponse:
            self._check_serving()
            # The first call per taxonomy tokenizes its class list: off the event loop.
            infos = await anyio.to_thread.run_sync(self.classifier.engine.taxonomy_infos)
            return pb.ListTaxonomiesResponse(taxonomies=[convert.taxonomy_to_proto(info) for info in infos])

        return await self._handle("ListTaxonomies", context, work)

    # -- shared steps -------------------------------------------------------

    def _check_serving(self, request_id: str | None = None) -> None:
        if self.state is ServingState.STARTING:
            raise not_ready(request_id)
        if self.state is ServingState.DRAINING:
            raise shutting_down(request_id)

    async def _classify(
        self, image: bytes, params_message: pb.ClassifyParams, request_id: str, context: grpc.aio.ServicerContext
    ):
        try:
            params = convert.params_from_proto(params_message)
        except ServiceError as error:
            error.request_id = request_id
            raise

        # The client's deadline bounds the server's work; without one the
        # service's request timeout applies.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise timed_out(0, request_id)
        results = await self.classifier.classify_images(
            [image], params, transport=TRANSPORT, request_ids=[request_id], timeout_s=remaining
        )
        return results[0]

    async def _handle(self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        """Run one call: count it, time it and turn failures into status codes."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        self.active_calls += 1
        self._idle.clear()
        try:
            return await work()
        except ServiceError as error:
            code = status_code_for(error)
            await context.abort(code, error.message, trailing_metadata=error_metadata(error))
        except asyncio.CancelledError:
            # grpc cancels the handler when the client goes away or the deadline passes.
            remaining = context.time_remaining()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed with an unexpected error", method)
            await context.abort(code, "internal error; the service log has the details")
        finally:
            self.active_calls -= 1
            if self.active_calls == 0:
                self._idle.set()
            GRPC_REQUESTS.labels(method=method, code=code.name).inc()
            GRPC_REQUEST_LATENCY.labels(method=method).observe(time.perf_counter() - started)
        raise AssertionError("context.abort returned instead of raising")  # pragma: no cover


class _StreamRun:
    """One ClassifyStream call: read messages, classify up to a window at once, write results as they finish."""

    def __init__(
        self,
        servicer: ClassifierServicer,
        request_iterator: AsyncIterator[pb.ClassifyStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        self.servicer = servicer
        self.request_iterator = request_iterator
        self.context = context
        self.window = asyncio.Semaphore(servicer.stream_window)
        self.responses: asyncio.Queue[pb.ClassifyStreamResponse | None] = asyncio.Queue()
        self.in_progress: set[str] = set()
        self.tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_all())
        try:
            # Only this loop writes, so writes on the call never overlap.
            while (response := await self.responses.get()) is not None:
                await self.context.write(response)
            await reader
        finally:
            reader.cancel()
            for task in list(self.tasks):
                task.cancel()

    async def _read_all(self) -> None:
        try:
            async for message in self.request_iterator:
                await self.window.acquire()
                error = self._check_message(message)
                if error is not None:
                    self.window.release()
                    await self.responses.put(self._error_response(message.request_id, error))
                    continue
                self.in_progress.add(message.request_id)
                task = asyncio.create_task(self._classify_item(message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            if self.tasks:
                await asyncio.gather(*list(self.tasks))
        finally:
            await self.responses.put(None)

    def _check_message(self, message: pb.ClassifyStreamRequest) -> ServiceError | None:
        if not message.request_id:
            return invalid_parameter("request_id is missing; give every stream message a unique id", "request_id")
        try:
            _check_request_id(message.request_id)
        except ServiceError as error:
            return error
        if message.request_id in self.in_progress:
            return invalid_parameter(
                f"request_id {message.request_id!r} is already in progress on this stream; ids must be unique",
                "request_id",
                message.request_id,
            )
        return None

    async def _classify_item(self, message: pb.ClassifyStreamRequest) -> None:
        request_id = message.request_id
        try:
            result = await self.servicer._classify(message.image, message.params, request_id, self.context)
            response = pb.ClassifyStreamResponse(request_id=request_id, result=convert.result_to_proto(result))
        except ServiceError as error:
            response = self._error_response(request_id, error)
        except Exception:
            logger.exception("stream item %s failed with an unexpected error", request_id)
            response = pb.ClassifyStreamResponse(
                request_id=request_id,
                error=pb.ItemError(
                    code=grpc.StatusCode.INTERNAL.value[0], message="internal error; the service log has the details"
                ),
            )
        finally:
            self.in_progress.discard(request_id)
            self.window.release()
        await self.responses.put(response)

    @staticmethod
    def _error_response(request_id: str, error: ServiceError) -> pb.ClassifyStreamResponse:
        item_error = pb.ItemError(
            code=status_code_for(error).value[0],
            message=error.message,
            field=error.field or "",
            retry_after_s=error.retry_after_s or 0,
        )
        return pb.ClassifyStreamResponse(request_id=request_id, error=item_error)
