"""The ASGI middlewares in front of the API, each around a small Starlette app, in-process."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from service import auth
from service.auth import ApiKeyMiddleware
from service.body_limit import BodyLimitMiddleware, route_limits
from service.config import load_config

KEY = "unit-test-key-41b2"


async def echo_length(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"received": len(body)})


async def plain(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def inner_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/classify", echo_length, methods=["POST"]),
            Route("/other", echo_length, methods=["POST"]),
            Route("/metrics", plain),
            Route("/readyz", plain),
        ]
    )


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def keyed_app(monkeypatch, protect_metrics: bool):
    monkeypatch.setenv("MLLM_CLASSIFY_API_KEY", KEY)
    config = load_config(environ={"MLLM_CLASSIFY_API_KEY": KEY, "MLLM_CLASSIFY_SERVER__PROTECT_METRICS": str(protect_metrics).lower()})
    return ApiKeyMiddleware(inner_app(), config=config)


def test_api_key_compared_in_constant_time(monkeypatch) -> None:
    calls = []
    real = auth.hmac.compare_digest

    def spy(left, right):
        calls.append((left, right))
        return real(left, right)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)

    assert auth.key_matches(KEY, KEY)
    assert not auth.key_matches("wrong", KEY)
    assert len(calls) == 2


@pytest.mark.parametrize("protect_metrics", [False, True])
def test_metrics_open_or_protected(monkeypatch, protect_metrics: bool) -> None:
    app = keyed_app(monkeypatch, protect_metrics)

    open_status = call(app, "GET", "/metrics").status_code
    keyed_status = call(app, "GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code

    assert open_status == (401 if protect_metrics else 200)
    assert keyed_status == 200
    assert call(app, "GET", "/readyz").status_code == 200


def test_api_key_required_on_classify(monkeypatch) -> None:
    app = keyed_app(monkeypatch, protect_metrics=False)

    assert call(app, "POST", "/classify", content=b"x").status_code == 401
    assert call(app, "POST", "/classify", content=b"x", headers={"X-API-Key": KEY}).status_code == 200
    assert call(app, "POST", "/classify", content=b"x", headers={"Authorization": f"Bearer {KEY}x"}).status_code == 401


def test_api_key_not_in_rejection_log(monkeypatch, caplog) -> None:
    app = keyed_app(monkeypatch, protect_metrics=False)

    with caplog.at_level("DEBUG"):
        call(app, "POST", "/classify", content=b"x", headers={"Authorization": f"Bearer {KEY}-guess"})

    assert "rejected 1 requests" in caplog.text
    assert KEY not in caplog.text


def limited_app(limit: int) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(inner_app(), config=load_config(environ={}), limits={"/classify": limit})


def test_body_limit_declared_length() -> None:
    response = call(limited_app(1000), "POST", "/classify", content=b"x" * 1001)

    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert "1001 bytes, above the limit of 1000 bytes" in response.json()["error"]


def test_body_limit_streamed_body() -> None:
    async def chunks():
        for _ in range(100):
            yield b"y" * 100

    response = call(limited_app(1000), "POST", "/classify", content=chunks())

    assert response.status_code == 413
    assert "above the limit of 1000 bytes" in response.json()["error"]


def test_body_limit_passes_small_bodies() -> None:
    response = call(limited_app(1000), "POST", "/classify", content=b"z" * 1000)

    assert response.status_code == 200
    assert response.json() == {"received": 1000}


def test_body_limit_default_for_other_routes() -> None:
    app = BodyLimitMiddleware(inner_app(), config=load_config(environ={}), limits={}, default_limit=10)

    assert call(app, "POST", "/other", content=b"q" * 11).status_code == 413


def test_route_limits_follow_config() -> None:
    config = load_config(
        environ={
            "MLLM_CLASSIFY_LIMITS__MAX_IMAGE_BYTES": "1048576",
            "MLLM_CLASSIFY_LIMITS__MAX_IMAGES_PER_REQUEST": "4",
        }
    )
    limits = route_limits(config)

    assert limits["/classify"] > 1048576
    assert limits["/classify"] < 2 * 1048576
    assert limits["/classify_batch"] > 4 * 1048576
    assert limits["/classify_batch"] < 5 * 1048576
