"""The BentoML service: HTTP API, adaptive batching and lifecycle.

Every image, from HTTP, gRPC or annotation assist, goes through
`Classifier.classify_images`: decode and checks in a worker thread, then each
prompt of its protocol through the worker's adaptive batcher
(service/batcher.py), which merges images from all clients into model batches.

Run: `bentoml serve service.service:Classifier` (see service/config.yaml).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio
import bentoml
from PIL import Image
from pydantic import Field
from starlette.responses import JSONResponse

from service import metrics
from service.assist.bentoml_mount import mount_assist_apps
from service.auth import ApiKeyMiddleware
from service.batcher import AdaptiveBatcher, BatcherClosed, QueueTimeout
from service.body_limit import BodyLimitMiddleware
from service.config import load_config
from service.disconnects import ClientDisconnected, cancel_on_disconnect
from service.engine import Engine
from service.error_bodies import ErrorBodyMiddleware
from service.faults import FaultInjector
from service.errors import (
    ServiceError,
    backend_failed,
    invalid_image,
    invalid_parameter,
    overloaded,
    queue_timeout,
    shutting_down,
    timed_out,
)
from service.images import ImageError, ImageLimits, decode_image
from service.protocols import ModelAnswer, Outcome, ParameterError, PromptRequest, create_run
from service.protocols.runs import RunContext
from service.http_routes import build_routes_app
from service.logs import configure_service_logging
from service.requests import build_params, record_error, record_result
from service.startup_failure import stop_server
from service.schemas import PROTOCOLS, BatchClassifyResult, ClassifyParams, ClassifyResult, StageTimings
from service.url_fetch import FetchError, UrlFetcher

logger = logging.getLogger("mllm_classify.service")

CONFIG = load_config()


@dataclass
class BatchItem:
    """One prompt about one decoded image, as queued for the batcher."""

    image: Image.Image
    request: PromptRequest
    request_id: str
    max_new_tokens: int
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass
class BatchOutput:
    answer: ModelAnswer
    queue_s: float
    preprocess_s: float
    generate_s: float


@bentoml.service(
    name="mllm_classify",
    workers=CONFIG.server.workers,
    traffic={"timeout": CONFIG.limits.request_timeout_s + 30},
)
class Classifier:
    """Classify images with a multimodal LLM and map the answers to taxonomy classes."""

    def __init__(self) -> None:
        configure_service_logging()
        self.config = CONFIG
        try:
            self.engine = Engine(self.config)
        except Exception as error:
            stop_server(error)
            raise
        self.model_id = self.engine.info().model_id
        self.limits = ImageLimits(self.config.limits.max_image_bytes, self.config.limits.max_image_pixels)
        self.faults = FaultInjector(self.config.faults)
        self.fetcher = UrlFetcher(self.config.fetch)

        # One batch at a time in the batcher's thread: concurrent batches would
        # only split the same cores between torch's threads.
        self.batcher: AdaptiveBatcher[BatchItem, BatchOutput] = AdaptiveBatcher(
            self._run_batch,
            max_batch_size=self.config.batching.max_batch_size,
            max_latency_s=self.config.batching.max_latency_ms / 1000,
        )
        self._in_flight = 0
        self.ready = True
        self.grpc_server = None
        metrics.initialize_series(self.model_id, self.engine.taxonomy_names(), PROTOCOLS)
        self.engine.answer_cache.on_lookup = metrics.answer_cache_recorder(self.model_id)
        metrics.MODEL_LOADED.labels(model=self.model_id).set(1)
        logger.info(
            "service ready: model %s, taxonomies %s, max_batch_size %d",
            self.model_id,
            ", ".join(self.engine.taxonomy_names()),
            self.config.batching.max_batch_size,
        )

    # -- lifecycle ---------------------------------------------------------

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        if not self.config.server.grpc_enabled:
            return
        try:
            from service.grpc.server import start_grpc_server
        except ImportError as error:
            logger.warning("gRPC server not started: %s", error)
            return
        self.grpc_server = await start_grpc_server(self, self.config)

    @bentoml.on_shutdown
    async def stop_serving(self) -> None:
        # HTTP requests have drained by now; gRPC calls drain in stop(), and
        # only then can the batcher close without failing anyone's prompt.
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=self.config.limits.request_timeout_s)
            self.grpc_server = None
        await self.batcher.close()

    # -- batched model call ------------------------------------------------

    def _run_batch(self, items: list[BatchItem]) -> list[BatchOutput]:
        """Run one model batch; called by the batcher in its own thread."""
        started = time.monotonic()
        request_ids = [item.request_id for item in items]
        try:
            self.faults.before_batch(request_ids)
            answers, timings = self.engine.answer(
                [item.image for item in items],
                [item.request for item in items],
                [item.max_new_tokens for item in items],
            )
        except Exception:
            logger.exception("backend failed on a batch of %d, requests %s", len(items), request_ids)
            raise

        metrics.BATCH_SIZE.labels(model=self.model_id).observe(len(items))
        metrics.BATCH_LATENCY.labels(model=self.model_id).observe(time.monotonic() - started)
        outputs = []
        for item, answer in zip(items, answers, strict=True):
            queue_s = max(0.0, started - item.enqueued_at)
            metrics.QUEUE_WAIT.labels(model=self.model_id).observe(queue_s)
            outputs.append(BatchOutput(answer, queue_s, timings.preprocess_s, timings.generate_s))
        return outputs

    # -- the shared request path --------------------------------------------

    async def classify_images(
        self,
        images: list[bytes],
        params: ClassifyParams,
        transport: str,
        request_ids: list[str] | None = None,
        timeout_s: float | None = None,
    ) -> list[ClassifyResult]:
        """Classify images that share parameters; raise ServiceError for the whole request.

        Parameters are checked once and every image is decoded before any joins
        a batch, so a bad upload fails its own request and no other.
        """
        request_ids = request_ids or [uuid.uuid4().hex for _ in images]
        taxonomy = params.taxonomy or self.engine.default_taxonomy
        if taxonomy not in self.engine.taxonomy_names():
            # Client text never becomes a metric label: each new value would be a new series.
            taxonomy = "unknown"
        limit = self.config.limits.max_concurrency

        if self._in_flight + len(images) > limit:
            error = overloaded(limit, self.config.limits.retry_after_s, request_ids[0])
            record_error(error, transport, params, self.model_id, taxonomy)
            raise error

        self._in_flight += len(images)
        metrics.IN_FLIGHT.inc(len(images))
        try:
            return await self._classify_admitted(images, params, transport, request_ids, timeout_s)
        except ServiceError as error:
            record_error(error, transport, params, self.model_id, taxonomy)
            if error.status >= 500:
                logger.error("request %s failed: %s", error.request_id, error.message)
            raise
        finally:
            self._in_flight -= len(images)
            metrics.IN_FLIGHT.dec(len(images))

    async def _classify_admitted(
        self,
        images: list[bytes],
        params: ClassifyParams,
        transport: str,
        request_ids: list[str],
        timeout_s: float | None,
    ) -> list[ClassifyResult]:
        # Checked once per request: every image of it shares the resolved candidates.
        try:
            context = self.engine.prepare(params)
        except ParameterError as error:
            raise invalid_parameter(str(error), error.field, request_ids[0]) from error

        decoded = []
        for position, data in enumerate(images):
            started = time.perf_counter()
            try:
                image = await anyio.to_thread.run_sync(self._decode_and_prepare, data)
            except ImageError as error:
                field = "image" if len(images) == 1 else f"images[{position}]"
                raise invalid_image(f"invalid image: {error}", field, request_ids[position]) from error
            decoded.append((image, (time.perf_counter() - started) * 1000))

        timeout_s = timeout_s or self.config.limits.request_timeout_s
        tasks = [
            self._classify_one(image, decode_ms, context, request_id)
            for (image, decode_ms), request_id in zip(decoded, request_ids, strict=True)
        ]
        try:
            results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout_s)
        except TimeoutError as error:
            raise timed_out(timeout_s, request_ids[0]) from error

        for result in results:
            record_result(result, transport)
        return list(results)

    def _decode_and_prepare(self, data: bytes) -> Image.Image:
        # The backend's per-image work (resizing to the model's input size)
        # runs here, in the request's thread, so the batch thread only runs the model.
        return self.engine.prepare_image(decode_image(data, self.limits))

    async def _classify_one(self, image, decode_ms: float, context: RunContext, request_id: str) -> ClassifyResult:
        started = time.perf_counter()
        params = context.params
        run = create_run(context)
        timings = StageTimings(decode_ms=round(decode_ms, 3))
        prompt_tokens = generated_tokens = 0
        max_new_tokens = params.max_new_tokens or self.config.model.max_new_tokens

        step: PromptRequest | Outcome = run.first_prompt()
        while isinstance(step, PromptRequest):
            output = await self._submit(BatchItem(image, step, request_id, max_new_tokens))
            timings.queue_ms += output.queue_s * 1000
            timings.preprocess_ms += output.preprocess_s * 1000
            timings.generate_ms += output.generate_s * 1000
            prompt_tokens += output.answer.prompt_tokens
            generated_tokens += output.answer.generated_tokens
            # Mapping runs the text encoder: keep it off the event loop.
            step = await anyio.to_thread.run_sync(run.on_answer, output.answer)

        timings.map_ms = round(run.stats.map_s * 1000, 3)  # type: ignore[attr-defined]
        timings.total_ms = round(decode_ms + (time.perf_counter() - started) * 1000, 3)
        return self.engine.build_result(run, step, request_id, timings, prompt_tokens, generated_tokens)

    async def _submit(self, item: BatchItem) -> BatchOutput:
        try:
            return await self.batcher.submit(item)
        except QueueTimeout as error:
            raise queue_timeout(error.waited_s, error.max_latency_s, self.config.limits.retry_after_s, item.request_id) from error
        except BatcherClosed as error:
            raise shutting_down(item.request_id) from error
        except Exception as error:
            logger.error("batch failed for request %s: %s", item.request_id, error)
            raise backend_failed(item.request_id) from error

    # -- HTTP API ----------------------------------------------------------

    @bentoml.api(route="/classify")
    async def classify(
        self,
        # A file field must be a plain Path for BentoML to treat it as a
        # multipart upload: bytes is parsed as a JSON form value, and Path | None
        # loses BentoML's upload validator.
        image: Annotated[Path, Field(description="The image file (JPEG, PNG, WebP, GIF, BMP or TIFF).")],
        protocol: Annotated[str, Field(description="open, closed, choice, multilabel, constrained or score.")] = "open",
        taxonomy: Annotated[str | None, Field(description="Taxonomy name from GET /taxonomies; default: the service's.")] = None,
        # BentoML parses form fields as JSON where they parse, so a JSON array
        # arrives as a list and anything else as a string.
        candidates: Annotated[
            list[str] | str | None,
            Field(description="Class ids or names to restrict the answer to: a JSON array or comma-separated."),
        ] = None,
        top_k: Annotated[int, Field(description="Number of ranked labels to return.")] = 5,
        seed: Annotated[int, Field(description="Seed for option order in the choice protocol.")] = 0,
        num_options: Annotated[int, Field(description="Options offered by the two-stage choice protocol.")] = 5,
        max_new_tokens: Annotated[int | None, Field(description="Generation limit; default from the config.")] = None,
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> ClassifyResult:
        """Classify one uploaded image."""
        request_id = uuid.uuid4().hex

        async def work() -> list[ClassifyResult]:
            params = build_params(
                protocol=protocol, taxonomy=taxonomy, candidates=candidates, top_k=top_k,
                seed=seed, num_options=num_options, max_new_tokens=max_new_tokens,
            )
            data = await anyio.Path(image).read_bytes()
            return await self.classify_images([data], params, "http", [request_id])

        outcome = await self._serve_http(ctx, [request_id], work())
        return outcome if isinstance(outcome, JSONResponse) else outcome[0]  # type: ignore[return-value]

    @bentoml.api(route="/classify_url")
    async def classify_url(
        self,
        image_url: Annotated[str, Field(description="Image URL to fetch; only hosts on the fetch allowlist are fetched.")],
        protocol: str = "open",
        taxonomy: str | None = None,
        candidates: list[str] | str | None = None,
        top_k: int = 5,
        seed: int = 0,
        num_options: int = 5,
        max_new_tokens: int | None = None,
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> ClassifyResult:
        """Classify an image fetched from a URL; disabled unless the fetch section allows it."""
        request_id = uuid.uuid4().hex

        async def work() -> list[ClassifyResult]:
            params = build_params(
                protocol=protocol, taxonomy=taxonomy, candidates=candidates, top_k=top_k,
                seed=seed, num_options=num_options, max_new_tokens=max_new_tokens,
            )
            data = await self._fetch_image(image_url, request_id)
            return await self.classify_images([data], params, "http", [request_id])

        outcome = await self._serve_http(ctx, [request_id], work())
        return outcome if isinstance(outcome, JSONResponse) else outcome[0]  # type: ignore[return-value]

    async def _serve_http(
        self, ctx: bentoml.Context, request_ids: list[str], work: Awaitable[list[ClassifyResult]]
    ) -> list[ClassifyResult] | JSONResponse:
        """Await an endpoint's work while its client stays connected; turn a ServiceError or a disconnect into the response."""
        try:
            return await cancel_on_disconnect(ctx.request, work)
        except ServiceError as error:
            error.request_id = error.request_id or (request_ids[0] if request_ids else None)
            return self._error_response(ctx, error)
        except ClientDisconnected:
            return self._client_gone(ctx, request_ids)

    @staticmethod
    def _error_response(ctx: bentoml.Context, error: ServiceError) -> JSONResponse:
        # In BentoML 1.4.40 (api_endpoint in _bentoml_impl/server/app.py) an API
        # with a ctx parameter responds with ctx.response's status and extra
        # headers, not with those of the returned response.
        response = error.to_response()
        ctx.response.status_code = response.status_code
        if "retry-after" in response.headers:
            ctx.response.headers["Retry-After"] = response.headers["retry-after"]
        return response

    def _client_gone(self, ctx: bentoml.Context, request_ids: list[str]) -> JSONResponse:
        logger.info("requests %s: client disconnected, work cancelled", ", ".join(request_ids))
        metrics.ERRORS.labels(reason="client_disconnected", transport="http").inc()
        # The client is gone and never reads this response. 499 is the usual
        # status for it in access logs.
        ctx.response.status_code = 499
        body = {"error": "client disconnected", "field": None, "request_id": request_ids[0] if request_ids else None}
        return JSONResponse(body, status_code=499)

    async def _fetch_image(self, image_url: str, request_id: str) -> bytes:
        """Return the image fetched from image_url, or raise a 400 naming why it was not fetched."""
        try:
            return await anyio.to_thread.run_sync(self.fetcher.fetch, image_url)
        except FetchError as error:
            logger.info("request %s: image_url not fetched: %s", request_id, error)
            raise invalid_parameter(str(error), "image_url", request_id) from error

    @bentoml.api(route="/classify_batch")
    async def classify_batch(
        self,
        images: Annotated[list[Path], Field(description="Image files, classified with the same settings.")],
        protocol: str = "open",
        taxonomy: str | None = None,
        candidates: list[str] | str | None = None,
        top_k: int = 5,
        seed: int = 0,
        num_options: int = 5,
        max_new_tokens: int | None = None,
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> BatchClassifyResult:
        """Classify several images with the same settings; results keep the upload order."""
        request_ids = [uuid.uuid4().hex for _ in images]

        async def work() -> list[ClassifyResult]:
            if not images:
                raise invalid_image("no images were uploaded", "images")
            if len(images) > self.config.limits.max_images_per_request:
                raise invalid_parameter(
                    f"{len(images)} images, above the limit of {self.config.limits.max_images_per_request} per request",
                    "images",
                )
            params = build_params(
                protocol=protocol, taxonomy=taxonomy, candidates=candidates, top_k=top_k,
                seed=seed, num_options=num_options, max_new_tokens=max_new_tokens,
            )
            uploads = [await anyio.Path(path).read_bytes() for path in images]
            return await self.classify_images(uploads, params, "http", request_ids)

        outcome = await self._serve_http(ctx, request_ids, work())
        return outcome if isinstance(outcome, JSONResponse) else BatchClassifyResult(results=outcome)  # type: ignore[return-value]


# BentoML applies these in order, outermost first: requests without a valid
# API key are rejected before any body is read, and oversized bodies before
# parsing.
Classifier.add_asgi_middleware(ApiKeyMiddleware, config=CONFIG)
Classifier.add_asgi_middleware(BodyLimitMiddleware, config=CONFIG)
Classifier.add_asgi_middleware(ErrorBodyMiddleware, max_parts=CONFIG.limits.max_images_per_request + 16)
Classifier.mount_asgi_app(build_routes_app(), path="/")
# Annotation assist: the review page and suggestions under /assist, the Label
# Studio ML backend API under /labelstudio, both on classify_images.
mount_assist_apps(Classifier)
