"""Plain GET endpoints mounted beside the BentoML APIs, which accept POST only."""

from __future__ import annotations

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.schemas import TaxonomyList


def _service():
    service = bentoml.get_current_service()
    if service is None or not getattr(service, "ready", False):
        return None
    return service


async def taxonomies(_: Request) -> JSONResponse:
    service = _service()
    if service is None:
        return JSONResponse({"error": "the model is still loading; retry shortly", "field": None}, status_code=503)
    body = TaxonomyList(taxonomies=service.engine.taxonomy_infos())
    return JSONResponse(body.model_dump())


async def info(_: Request) -> JSONResponse:
    """Describe the loaded model; BentoML's own /healthz, /livez and /readyz report health."""
    service = _service()
    if service is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    backend_info = service.engine.info()
    return JSONResponse(
        {
            "status": "ok",
            "model": backend_info.model_id,
            "backend": backend_info.backend,
            "device": backend_info.device,
            "dtype": backend_info.dtype,
            "taxonomies": service.engine.taxonomy_names(),
            "max_batch_size": service.config.batching.max_batch_size,
        }
    )


def build_routes_app() -> Starlette:
    return Starlette(routes=[Route("/taxonomies", taxonomies, methods=["GET"]), Route("/info", info, methods=["GET"])])
