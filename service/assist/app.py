"""The `/assist` app: suggestions, decisions, class autocomplete, the review page and its queue.

The service mounts it with `bentoml.mount_asgi_app(app, path="/assist")`; the
Label Studio ML backend API is the separate app of `labelstudio_app`.

Routes, relative to the mount path:
  GET  /                       review page (static HTML and JS, no CDN)
  POST /suggest                multipart `image` + form `top_k`, `confirm`, `taxonomy`, `image_ref`
  GET  /suggestions/{id}       a stored suggestion with its decisions
  POST /decisions              JSON DecisionRequest: accept a rank, give a label, or reject
  GET  /labels?q=&limit=       autocomplete over the taxonomy's class names and synonyms
  GET  /queue                  images of the review folder, hardest undecided first
  POST /queue/{name}/suggest   suggestion for a folder image (reused unless refresh=true)
  GET  /images/{name}          a folder image
  GET  /report                 acceptance report as JSON
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.assist.context import (
    AssistContext,
    TaxonomyLookup,
    UnknownTaxonomyError,
    error_response,
    service_error_response,
)
from service.assist.decisions import accept_rank, decide_label, reject
from service.assist.labels import LabelIndex
from service.assist.report import build_report
from service.assist.schemas import DecisionRequest, Queue, QueueItem
from service.assist.settings import AssistSettings
from service.assist.suggest import Classify, MapperLookup
from service.assist.task_images import TaskImageError, resolve_local_image
from service.errors import ServiceError

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
MAX_LABEL_RESULTS = 50


def _form_bool(value: object, field: str) -> bool | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{field} must be true or false, got {value!r}")


def _form_int(value: object, field: str, lower: int, upper: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise ValueError(f"{field} must be an integer, got {value!r}") from None
    if not lower <= number <= upper:
        raise ValueError(f"{field} is {number}, outside {lower}..{upper}")
    return number


class AssistRoutes:
    def __init__(self, context: AssistContext) -> None:
        self.context = context
        self.settings = context.settings

    async def suggest(self, request: Request) -> Response:
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            return error_response(400, "missing image: upload the image file in the multipart field 'image'", "image")
        try:
            top_k = _form_int(form.get("top_k"), "top_k", 1, 20)
        except ValueError as error:
            return error_response(400, str(error), "top_k")
        try:
            confirm = _form_bool(form.get("confirm"), "confirm")
        except ValueError as error:
            return error_response(400, str(error), "confirm")

        image = await upload.read()
        image_ref = str(form.get("image_ref") or upload.filename or "")[:1024] or None
        taxonomy = str(form.get("taxonomy") or "") or None
        try:
            suggestion = await self.context.suggester.suggest(
                image, source="api", top_k=top_k, confirm=confirm, taxonomy=taxonomy, image_ref=image_ref
            )
        except ServiceError as error:
            return service_error_response(error)
        return JSONResponse(suggestion.model_dump(mode="json"))

    async def get_suggestion(self, request: Request) -> Response:
        suggestion_id = request.path_params["suggestion_id"]
        store = self.context.store
        suggestion = await run_in_threadpool(lambda: store().get_suggestion(suggestion_id))
        if suggestion is None:
            return error_response(404, f"suggestion {suggestion_id!r} not found", "suggestion_id")
        decisions = await run_in_threadpool(lambda: store().decisions(suggestion_id))
        body = suggestion.model_dump(mode="json")
        body["decisions"] = [decision.model_dump(mode="json") for decision in decisions]
        return JSONResponse(body)

    async def post_decision(self, request: Request) -> Response:
        try:
            decision_request = DecisionRequest.model_validate(await request.json())
        except json.JSONDecodeError as error:
            return error_response(400, f"request body is not valid JSON: {error.msg}")
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            return error_response(400, f"invalid decision: {first['msg']}", field)

        store = self.context.store
        suggestion = await run_in_threadpool(lambda: store().get_suggestion(decision_request.suggestion_id))
        if suggestion is None:
            return error_response(404, f"suggestion {decision_request.suggestion_id!r} not found", "suggestion_id")

        try:
            if decision_request.reject:
                resolved = reject()
            elif decision_request.rank is not None:
                resolved = accept_rank(suggestion, decision_request.rank)
            else:
                index = await run_in_threadpool(self._label_index_or_none, suggestion.taxonomy)
                resolved = decide_label(suggestion, decision_request.label or "", index)
        except ValueError as error:
            return error_response(400, str(error), "rank")

        source = "review" if suggestion.source == "review" else "api"
        decision = await self.context.record(
            suggestion, resolved, source=source, annotator=decision_request.annotator
        )
        return JSONResponse(decision.model_dump(mode="json"), status_code=201)

    def _label_index_or_none(self, taxonomy: str) -> LabelIndex | None:
        try:
            return self.context.label_index(taxonomy)
        except UnknownTaxonomyError as error:
            logger.warning("no class lookup for taxonomy %r, keeping the typed label as is: %s", taxonomy, error)
            return None

    async def labels(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        try:
            limit = _form_int(request.query_params.get("limit"), "limit", 1, MAX_LABEL_RESULTS) or 10
        except ValueError as error:
            return error_response(400, str(error), "limit")
        taxonomy = request.query_params.get("taxonomy") or None
        try:
            index = await run_in_threadpool(self.context.label_index, taxonomy)
        except UnknownTaxonomyError as error:
            return error_response(400, str(error), "taxonomy")
        options = index.search(query, limit)
        return JSONResponse({"labels": [option.model_dump() for option in options]})

    def _folder_images(self) -> list[str]:
        folder = self.settings.images_dir
        if folder is None:
            return []
        folder = folder.expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"images folder {folder} not found; check MLLM_CLASSIFY_ASSIST__IMAGES_DIR")
        return sorted(
            path.name for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )

    def _build_queue(self) -> Queue:
        names = self._folder_images()
        states = self.context.store().review_states(names)
        items = []
        for name in names:
            suggestion, decision = states.get(name, (None, None))
            items.append(QueueItem(name=name, suggestion=suggestion, decision=decision))

        # Undecided images first, hardest (highest uncertainty) first; images
        # without a suggestion yet come after the suggested ones, decided ones last.
        def order(item: QueueItem) -> tuple[int, float, str]:
            if item.decision is not None:
                return (2, 0.0, item.name)
            if item.suggestion is None:
                return (1, 0.0, item.name)
            return (0, -item.suggestion.uncertainty, item.name)

        items.sort(key=order)
        decided = sum(item.decision is not None for item in items)
        return Queue(items=items, decided=decided, total=len(items))

    async def queue(self, _: Request) -> Response:
        try:
            queue = await run_in_threadpool(self._build_queue)
        except FileNotFoundError as error:
            logger.error("review queue unavailable: %s", error)
            return error_response(500, str(error))
        return JSONResponse(queue.model_dump(mode="json"))

    async def queue_suggest(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            path = resolve_local_image(self.settings.images_dir, name)
            refresh = _form_bool(request.query_params.get("refresh"), "refresh") or False
            confirm = _form_bool(request.query_params.get("confirm"), "confirm")
        except TaskImageError as error:
            return error_response(404, str(error), "name")
        except ValueError as error:
            return error_response(400, str(error))

        store = self.context.store
        if not refresh:
            existing = await run_in_threadpool(lambda: store().review_states([name]))
            if name in existing:
                return JSONResponse(existing[name][0].model_dump(mode="json"))

        image = await run_in_threadpool(path.read_bytes)
        try:
            suggestion = await self.context.suggester.suggest(image, source="review", confirm=confirm, image_ref=name)
        except ServiceError as error:
            return service_error_response(error)
        return JSONResponse(suggestion.model_dump(mode="json"))

    async def image(self, request: Request) -> Response:
        try:
            path = resolve_local_image(self.settings.images_dir, request.path_params["name"])
        except TaskImageError as error:
            return error_response(404, str(error), "name")
        return FileResponse(path)

    async def report(self, request: Request) -> Response:
        try:
            target = float(request.query_params.get("target", "0.95"))
        except ValueError:
            return error_response(400, "target must be a number between 0 and 1", "target")
        if not 0.0 < target <= 1.0:
            return error_response(400, f"target is {target}, outside (0, 1]", "target")
        history = await run_in_threadpool(lambda: self.context.store().history())
        return JSONResponse(build_report(history, target=target).model_dump(mode="json"))

    async def review_page(self, request: Request) -> Response:
        # The page finds the API relative to the mount path, which Starlette
        # passes as root_path (e.g. "/assist" inside the BentoML service).
        base = request.scope.get("root_path", "").rstrip("/") + "/"
        template = (STATIC_DIR / "review.html").read_text(encoding="utf-8")
        return HTMLResponse(template.replace("{{BASE}}", json.dumps(base)[1:-1]))


def build_assist_app(
    classify: Classify,
    taxonomies: TaxonomyLookup,
    settings: AssistSettings,
    mappers: MapperLookup | None = None,
) -> Starlette:
    """Build the `/assist` app; `classify` is the service's shared async classification path.

    With `mappers` (taxonomy name -> `mapping.Mapper`), an answer that maps to
    fewer than top_k classes, such as an exact name match, gets the nearest
    classes by embedding as further suggestions.
    """
    context = AssistContext(classify, taxonomies, settings, mappers)
    routes = AssistRoutes(context)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        # Mounted apps may not get lifespan events, so the store also opens on first use.
        await run_in_threadpool(context.store)
        yield

    return Starlette(
        routes=[
            Route("/", routes.review_page, methods=["GET"]),
            Route("/suggest", routes.suggest, methods=["POST"]),
            Route("/suggestions/{suggestion_id}", routes.get_suggestion, methods=["GET"]),
            Route("/decisions", routes.post_decision, methods=["POST"]),
            Route("/labels", routes.labels, methods=["GET"]),
            Route("/queue", routes.queue, methods=["GET"]),
            Route("/queue/{name}/suggest", routes.queue_suggest, methods=["POST"]),
            Route("/images/{name}", routes.image, methods=["GET"]),
            Route("/report", routes.report, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
    )
