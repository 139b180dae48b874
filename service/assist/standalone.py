"""Annotation assist without BentoML: the engine in-process behind the assist apps.

`mllm-classify assist serve` runs this app with uvicorn, for a labeler's own
machine or for tests. It classifies one request at a time on the in-process
Engine, without cross-request batching. The BentoML service mounts the same
apps on its batched path instead.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from service.assist.app import build_assist_app
from service.assist.labelstudio_app import build_labelstudio_app
from service.assist.settings import AssistSettings
from service.config import Config
from service.engine import Engine
from service.errors import invalid_image, invalid_parameter
from service.images import ImageError, ImageLimits, decode_image
from service.protocols import ParameterError
from service.schemas import ClassifyParams, ClassifyResult

logger = logging.getLogger(__name__)


class EngineClassifier:
    """The assist `classify` callable on an in-process Engine, one request at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        limits = engine.config.limits
        self._limits = ImageLimits(limits.max_image_bytes, limits.max_image_pixels)
        # The backend runs one batch at a time, and torch already uses every core for it.
        self._lock = threading.Lock()

    def _classify_sync(self, image: bytes, params: ClassifyParams) -> ClassifyResult:
        try:
            self.engine.prepare(params)
        except ParameterError as error:
            raise invalid_parameter(str(error), error.field) from error
        try:
            decoded = decode_image(image, self._limits)
        except ImageError as error:
            raise invalid_image(f"invalid image: {error}") from error
        with self._lock:
            return self.engine.classify_batch([decoded], [params])[0]

    async def __call__(self, image: bytes, params: ClassifyParams) -> ClassifyResult:
        return await run_in_threadpool(self._classify_sync, image, params)

    def taxonomy(self, name: str | None):
        """Return the served taxonomy `name` (None: the default); raise ParameterError for others."""
        return self.engine.mapper(name).taxonomy


async def _metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _root(_: Request) -> Response:
    return RedirectResponse("/assist/")


def build_standalone_app(config: Config, settings: AssistSettings, engine: Engine | None = None) -> Starlette:
    """Load the engine (unless given) and serve /assist, /labelstudio and /metrics."""
    classifier = EngineClassifier(engine or Engine(config))
    return Starlette(
        routes=[
            Route("/", _root, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
            Mount("/assist", build_assist_app(classifier, classifier.taxonomy, settings, classifier.engine.mapper)),
            Mount(
                "/labelstudio",
                build_labelstudio_app(classifier, classifier.taxonomy, settings, classifier.engine.mapper),
            ),
        ]
    )
