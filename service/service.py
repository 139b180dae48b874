"""The BentoML service: HTTP API, adaptive batching and lifecycle.

Every image, from HTTP, gRPC or annotation assist, goes through
`Classifier.classify_images`: decode and checks in a worker thread, then each
prompt of its protocol through the batchable `generate_batch` API, so BentoML's
adaptive batcher merges images from all clients into model batches.

Run: `bentoml serve service.service:Classifier` (see service/config.yaml).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated

import aiohttp
import anyio
import bentoml
from pydantic import BaseModel, Field

from service import metrics
from service.assist.bentoml_mount import mount_assist_apps
from service.auth import ApiKeyMiddleware
from service.body_limit import BodyLimitMiddleware
from service.config import load_config
from service.engine import Engine
from service.error_bodies import ErrorBodyMiddleware
from service.faults import FaultInjector
from service.errors import (
    ServiceError,
    backend_failed,
    invalid_image,
    invalid_parameter,
    overloaded,
    timed_out,
)
from service.images import ImageError, ImageLimits, decode_image
from service.internal_routes import InternalRouteGuard, authorize_self_client, pin_self_client_session
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


class BatchItem(BaseModel):
    """One prompt about one registered image, as queued for the batcher."""

    image_key: str
    request_id: str
    text: str
    prompt_id: str
    mode: str = "generate"
    choices: list[str] = Field(default_factory=list)
    num_beams: int = 1
    max_new_tokens: int
    enqueued_at: float


class BatchOutput(BaseModel):
    text: str = ""
    prompt_tokens: int = 0
    generated_tokens: int = 0
    choice_scores: list[float] | None = None
    class_scores: dict[str, float] | None = None
    queue_s: float = 0.0
    preprocess_s: float = 0.0
    generate_s: float = 0.0
    batch_size: int = 1


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

        # Decoded images wait here while their prompts travel through the
        # batcher, which only carries JSON-sized items. One dict per worker
        # process: the batcher of a worker only ever calls back into that worker.
        self._images: dict[str, object] = {}
        self._model_lock = threading.Lock()
        self._in_flight = 0
        self._self_client_authorized = False
        self.ready = True
        self.grpc_server = None
        metrics.initialize_series(self.model_id, self.engine.taxonomy_names(), PROTOCOLS)
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
    async def stop_grpc(self) -> None:
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=self.config.limits.request_timeout_s)
            self.grpc_server = None

    # -- batched model call ------------------------------------------------

    # BentoML 1.4 rejects max_batch_size=1 on a batchable API, so a limit of 1
    # turns the batcher off and every prompt calls the model on its own.
    @bentoml.api(
        batchable=CONFIG.batching.max_batch_size > 1,
        max_batch_size=max(2, CONFIG.batching.max_batch_size),
        max_latency_ms=CONFIG.batching.max_latency_ms,
        route="/internal/generate_batch",
    )
    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutput]:
        """Run one model batch; internal, called through the batcher by classify_images."""
        started = time.time()

        # A request that ended early (timed out, or its in-process batch call
        # was cut off) leaves its item in the batcher queue after its image was
        # released. Skip such items instead of failing the requests batched with
        # them; nobody waits for their output.
        looked_up = [(position, self._images.get(item.image_key)) for position, item in enumerate(items)]
        live = [(position, image) for position, image in looked_up if image is not None]
        outputs = [BatchOutput(batch_size=len(items)) for _ in items]
        if len(live) < len(items):
            ended = [items[position].request_id for position, image in looked_up if image is None]
            logger.warning("skipped %d batch items of requests that already ended: %s", len(ended), ended)
        if not live:
            return outputs

        live_items = [items[position] for position, _ in live]
        images = [image for _, image in live]
        requests = [
            PromptRequest(item.text, item.prompt_id, item.mode, tuple(item.choices), item.num_beams)  # type: ignore[arg-type]
            for item in live_items
        ]
        request_ids = [item.request_id for item in live_items]
        try:
            self.faults.before_batch(request_ids)
            # One batch at a time: concurrent calls (always so without the
            # batcher) would only split the same cores between torch's threads.
            with self._model_lock:
                answers, timings = self.engine.answer(images, requests, [item.max_new_tokens for item in live_items])
        except Exception:
            logger.exception("backend failed on a batch of %d, requests %s", len(live_items), request_ids)
            raise

        batch_seconds = time.time() - started
        metrics.BATCH_SIZE.labels(model=self.model_id).observe(len(live_items))
        metrics.BATCH_LATENCY.labels(model=self.model_id).observe(batch_seconds)
        for (position, _), item, answer in zip(live, live_items, answers, strict=True):
            queue_s = max(0.0, started - item.enqueued_at)
            metrics.QUEUE_WAIT.labels(model=self.model_id).observe(queue_s)
            outputs[position] = BatchOutput(
                text=answer.text,
                prompt_tokens=answer.prompt_tokens,
                generated_tokens=answer.generated_tokens,
                choice_scores=answer.choice_scores,
                class_scores=answer.class_scores,
                queue_s=queue_s,
                preprocess_s=timings.preprocess_s,
                generate_s=timings.generate_s,
                batch_size=len(live_items),
            )
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
                image = await anyio.to_thread.run_sync(decode_image, data, self.limits)
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

    async def _classify_one(self, image, decode_ms: float, context: RunContext, request_id: str) -> ClassifyResult:
        started = time.perf_counter()
        params = context.params
        run = create_run(context)
        timings = StageTimings(decode_ms=round(decode_ms, 3))
        prompt_tokens = generated_tokens = 0
        max_new_tokens = params.max_new_tokens or self.config.model.max_new_tokens

        image_key = uuid.uuid4().hex
        self._images[image_key] = image
        try:
            step: PromptRequest | Outcome = run.first_prompt()
            while isinstance(step, PromptRequest):
                item = BatchItem(
                    image_key=image_key,
                    request_id=request_id,
                    text=step.text,
                    prompt_id=step.prompt_id,
                    mode=step.mode,
                    choices=list(step.choices),
                    num_beams=step.num_beams,
                    max_new_tokens=max_new_tokens,
                    enqueued_at=time.time(),
                )
                output = await self._submit(item)
                timings.queue_ms += output.queue_s * 1000
                timings.preprocess_ms += output.preprocess_s * 1000
                timings.generate_ms += output.generate_s * 1000
                prompt_tokens += output.prompt_tokens
                generated_tokens += output.generated_tokens
                answer = ModelAnswer(
                    text=output.text,
                    prompt_tokens=output.prompt_tokens,
                    generated_tokens=output.generated_tokens,
                    choice_scores=output.choice_scores,
                    class_scores=output.class_scores,
                )
                # Mapping runs the text encoder: keep it off the event loop.
                step = await anyio.to_thread.run_sync(run.on_answer, answer)
        finally:
            self._images.pop(image_key, None)

        timings.map_ms = round(run.stats.map_s * 1000, 3)  # type: ignore[attr-defined]
        timings.total_ms = round(decode_ms + (time.perf_counter() - started) * 1000, 3)
        return self.engine.build_result(run, step, request_id, timings, prompt_tokens, generated_tokens)

    async def _submit(self, item: BatchItem) -> BatchOutput:
        if not self._self_client_authorized:
            authorize_self_client(self.to_async)  # type: ignore[attr-defined]
            pin_self_client_session(self.to_async)  # type: ignore[attr-defined]
            self._self_client_authorized = True
        try:
            outputs = await self._call_generate_batch(item)
        except ServiceError:
            raise
        except Exception as error:
            logger.error("batch call failed for request %s: %s", item.request_id, error)
            raise backend_failed(item.request_id) from error
        output = outputs[0]
        return output if isinstance(output, BatchOutput) else BatchOutput.model_validate(output)

    async def _call_generate_batch(self, item: BatchItem) -> list:
        # BentoML 1.4.40 (SessionManager in _bentoml_impl/client/proxy2.py)
        # replaces its aiohttp session every 100 calls and every 300 s by closing
        # the old one, which fails the calls still in flight on it with
        # ServerDisconnectedError or "Can not write request body". generate_batch
        # has no side effects and the image stays registered, so such a call is
        # sent once more, on the new session.
        try:
            return await self.to_async.generate_batch([item])  # type: ignore[attr-defined]
        except aiohttp.ClientConnectionError as error:
            logger.warning("batch call for request %s lost its connection (%s); sending it again", item.request_id, error)
            return await self.to_async.generate_batch([item])  # type: ignore[attr-defined]

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
    ) -> ClassifyResult:
        """Classify one uploaded image."""
        request_id = uuid.uuid4().hex
        try:
            params = build_params(
                protocol=protocol, taxonomy=taxonomy, candidates=candidates, top_k=top_k,
                seed=seed, num_options=num_options, max_new_tokens=max_new_tokens,
            )
            data = await anyio.Path(image).read_bytes()
            results = await self.classify_images([data], params, "http", [request_id])
        except ServiceError as error:
            error.request_id = error.request_id or request_id
            return error.to_response()  # type: ignore[return-value]
        return results[0]

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
    ) -> ClassifyResult:
        """Classify an image fetched from a URL; disabled unless the fetch section allows it."""
        request_id = uuid.uuid4().hex
        try:
            params = build_params(
                protocol=protocol, taxonomy=taxonomy, candidates=candidates, top_k=top_k,
                seed=seed, num_options=num_options, max_new_tokens=max_new_tokens,
            )
            data = await self._fetch_image(image_url, request_id)
            results = await self.classify_images([data], params, "http", [request_id])
        except ServiceError as error:
            error.request_id = error.request_id or request_id
            return error.to_response()  # type: ignore[return-value]
        return results[0]

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
    ) -> BatchClassifyResult:
        """Classify several images with the same settings; results keep the upload order."""
        request_ids = [uuid.uuid4().hex for _ in images]
        try:
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
            results = await self.classify_images(uploads, params, "http", request_ids)
        except ServiceError as error:
            error.request_id = error.request_id or request_ids[0] if request_ids else None
            return error.to_response()  # type: ignore[return-value]
        return BatchClassifyResult(results=results)


# BentoML applies these in order, outermost first: outside calls to the internal
# batch route and requests without a valid API key are rejected before any body
# is read, and oversized bodies before parsing.
Classifier.add_asgi_middleware(InternalRouteGuard)
Classifier.add_asgi_middleware(ApiKeyMiddleware, config=CONFIG)
Classifier.add_asgi_middleware(BodyLimitMiddleware, config=CONFIG)
Classifier.add_asgi_middleware(ErrorBodyMiddleware, max_parts=CONFIG.limits.max_images_per_request + 16)
Classifier.mount_asgi_app(build_routes_app(), path="/")
# Annotation assist: the review page and suggestions under /assist, the Label
# Studio ML backend API under /labelstudio, both on classify_images.
mount_assist_apps(Classifier)
