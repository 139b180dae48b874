"""The Label Studio ML backend API: `/health`, `/setup`, `/predict`, `/webhook`.

Mounted at `/labelstudio`, a Label Studio project uses
`http://<host>:3000/labelstudio` as its ML backend URL. Predictions classify
the task's image with the project's Choice values as candidates (when they
name classes of the taxonomy) and return the first suggestion as a `choices`
region. Webhook events for created and updated annotations become decisions
on the suggestion made for that task.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.assist import metrics
from service.assist.context import (
    AssistContext,
    TaxonomyLookup,
    UnknownTaxonomyError,
    error_response,
    service_error_response,
)
from service.assist.decisions import decide_label, reject
from service.assist.labels import LabelIndex
from service.assist.labelstudio import (
    ChoicesControl,
    LabelConfigError,
    annotation_choice,
    annotator_name,
    build_prediction,
    parse_label_config,
)
from service.assist.settings import AssistSettings
from service.assist.suggest import Classify, MapperLookup
from service.assist.task_images import TaskImageError, load_task_image
from service.errors import ServiceError

logger = logging.getLogger(__name__)

# The events that carry a labeler's decision; Label Studio also sends others.
DECISION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
MODEL_CLASS = "mllm-classify"


class LabelStudioRoutes:
    def __init__(self, context: AssistContext) -> None:
        self.context = context
        self.settings = context.settings
        self._model_version = context.settings.model_version

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "UP", "model_class": MODEL_CLASS})

    async def metrics(self, _: Request) -> Response:
        # Label Studio polls this path; the Prometheus metrics are on the service's /metrics.
        return JSONResponse({})

    async def setup(self, request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        schema = body.get("schema")
        if schema:
            try:
                parse_label_config(schema)
            except LabelConfigError as error:
                return error_response(400, str(error), "schema")
        return JSONResponse({"model_version": self._model_version or MODEL_CLASS})

    def _candidates(self, control: ChoicesControl) -> tuple[list[str] | None, dict[str, str]]:
        """Return class ids for the project's Choice values and the value of each id."""
        if not control.choices:
            return None, {}
        index: LabelIndex = self.context.label_index(self.settings.taxonomy)
        choice_names: dict[str, str] = {}
        unresolved = []
        for value in control.choices:
            option = index.resolve(value)
            if option is None:
                unresolved.append(value)
            else:
                choice_names.setdefault(option.id, value)

        if unresolved:
            logger.warning(
                "%d of %d Choice values name no class of taxonomy %s and are never predicted: %s",
                len(unresolved), len(control.choices), index.taxonomy_name, ", ".join(unresolved[:10]),
            )
        if not choice_names:
            return None, {}
        return list(choice_names), choice_names

    async def predict(self, request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            return error_response(400, "missing tasks: the body must contain a list 'tasks'", "tasks")
        try:
            control = parse_label_config(body.get("label_config") or "")
        except LabelConfigError as error:
            return error_response(400, str(error), "label_config")

        try:
            candidates, choice_names = await run_in_threadpool(self._candidates, control)
        except UnknownTaxonomyError as error:
            return error_response(400, str(error), "taxonomy")
        project_id = str(body.get("project") or "").split(".", 1)[0] or None

        results = []
        for task in tasks:
            task_id = str(task.get("id")) if isinstance(task, dict) and task.get("id") is not None else None
            reference = (task.get("data") or {}).get(control.data_key) if isinstance(task, dict) else None
            if not isinstance(reference, str):
                return error_response(400, f"task {task_id} has no image in data.{control.data_key}", "tasks")
            try:
                image = await load_task_image(reference, self.settings)
            except TaskImageError as error:
                logger.warning("task %s: %s", task_id, error)
                return error_response(400, f"task {task_id}: {error}", "tasks")
            try:
                suggestion = await self.context.suggester.suggest(
                    image,
                    source="labelstudio",
                    candidates=candidates,
                    image_ref=None if reference.startswith("data:") else reference[:1024],
                    task_id=task_id,
                    project_id=project_id,
                )
            except ServiceError as error:
                return service_error_response(error)
            self._model_version = self._model_version or suggestion.model_version
            results.append(build_prediction(suggestion, control, choice_names))
        return JSONResponse({"results": results})

    async def webhook(self, request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        action = str(body.get("action", ""))
        if action not in DECISION_EVENTS:
            metrics.WEBHOOK_EVENTS.labels(action=action or "none", outcome="ignored").inc()
            return JSONResponse({"status": "Unknown event"})

        task = body.get("task") or {}
        annotation = body.get("annotation") or {}
        if not isinstance(task, dict) or task.get("id") is None or not isinstance(annotation, dict):
            metrics.WEBHOOK_EVENTS.labels(action=action, outcome="invalid").inc()
            return error_response(400, f"{action} event without task.id or annotation", "task")

        task_id = str(task["id"])
        suggestion = await run_in_threadpool(lambda: self.context.store().latest_suggestion(task_id=task_id))
        if suggestion is None:
            metrics.WEBHOOK_EVENTS.labels(action=action, outcome="ignored").inc()
            logger.info("%s for task %s ignored: this backend made no prediction for that task", action, task_id)
            return JSONResponse({"status": "ignored", "reason": f"no suggestion stored for task {task_id}"})

        from_name = None
        label_config = (body.get("project") or {}).get("label_config") if isinstance(body.get("project"), dict) else None
        if label_config:
            try:
                from_name = parse_label_config(label_config).from_name
            except LabelConfigError as error:
                logger.warning("%s for task %s: cannot read the project's label config: %s", action, task_id, error)

        choice = annotation_choice(annotation, from_name)
        if annotation.get("was_cancelled") or choice is None:
            resolved = reject()
        else:
            index = await run_in_threadpool(self._label_index_or_none, suggestion.taxonomy)
            resolved = decide_label(suggestion, choice, index)

        decision = await self.context.record(
            suggestion,
            resolved,
            source="labelstudio",
            annotator=annotator_name(annotation),
            external_id=str(annotation["id"]) if annotation.get("id") is not None else None,
        )
        metrics.WEBHOOK_EVENTS.labels(action=action, outcome="recorded").inc()
        return JSONResponse({"status": "ok", "result": decision.model_dump(mode="json")}, status_code=201)

    def _label_index_or_none(self, taxonomy: str) -> LabelIndex | None:
        try:
            return self.context.label_index(taxonomy)
        except UnknownTaxonomyError as error:
            logger.warning("no class lookup for taxonomy %r, keeping the chosen label as is: %s", taxonomy, error)
            return None


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except json.JSONDecodeError as error:
        return error_response(400, f"request body is not valid JSON: {error.msg}")
    if not isinstance(body, dict):
        return error_response(400, "request body must be a JSON object")
    return body


def build_labelstudio_app(
    classify: Classify,
    taxonomies: TaxonomyLookup,
    settings: AssistSettings,
    mappers: MapperLookup | None = None,
) -> Starlette:
    """Build the Label Studio ML backend app; it shares the feedback store with the `/assist` app.

    `mappers` is optional, as for `build_assist_app`.
    """
    context = AssistContext(classify, taxonomies, settings, mappers)
    routes = LabelStudioRoutes(context)

    @asynccontextmanager
    async def lifespan(_: Starlette):
        await run_in_threadpool(context.store)
        yield

    return Starlette(
        routes=[
            Route("/", routes.health, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/setup", routes.setup, methods=["POST"]),
            Route("/predict", routes.predict, methods=["POST"]),
            Route("/webhook", routes.webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
