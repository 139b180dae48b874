"""Keep the internal batch route for the service's own calls.

`Classifier.generate_batch` must be a BentoML API for the adaptive batcher,
so BentoML 1.4.40 serves it at `/internal/generate_batch` on the public port.
The service reaches it through `self.to_async`, an httpx client that BentoML
wires to the app in-process (`RemoteProxy(..., app=app)` in
`_bentoml_impl/server/app.py`), so those calls pass through every ASGI
middleware like outside requests do.

Each worker process draws a random token at import. The service adds it as a
header to its own client (`authorize_self_client`), and `InternalRouteGuard`
responds 404 to any `/internal/` request without it. The token never leaves the
process, so outside clients cannot call the route, and the API key check can
let internal calls through without the key.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import sys

logger = logging.getLogger("mllm_classify.internal_routes")

INTERNAL_PREFIX = "/internal/"
TOKEN_HEADER = "x-mllm-classify-internal-token"
_TOKEN = secrets.token_hex(32)


def is_internal_path(path: str) -> bool:
    return path.startswith(INTERNAL_PREFIX)


def authorize_self_client(async_client) -> None:
    """Add this process's token to the default headers of BentoML's in-process client (`Classifier.to_async`).

    In BentoML 1.4.40 (`AsyncClient` in `_bentoml_impl/client/proxy2.py`) the
    client's session manager builds every aiohttp session, including the ones
    that replace aged sessions, from this same dict. So the header must be set
    before the client's first call, and then holds for the worker's lifetime.
    """
    headers = getattr(async_client, "default_headers", None)
    if not isinstance(headers, dict):
        raise RuntimeError(
            f"cannot add the internal route token to BentoML's client {type(async_client).__name__}: "
            "it has no default_headers dict; this BentoML version is not supported"
        )
    headers[TOKEN_HEADER] = _TOKEN


def pin_self_client_session(async_client) -> None:
    """Keep BentoML's in-process client on one session for the worker's lifetime.

    In BentoML 1.4.40 the client's `SessionManager` replaces its aiohttp session
    after 100 requests or 300 s and closes the old one at once, which cuts off
    the batch calls still running on it ("Server disconnected"), so their
    requests failed with 503 under load. An in-process session holds no network
    connection that could go stale, so it never needs replacing.
    """
    manager = getattr(async_client, "_session_manager", None)
    if manager is None or not hasattr(manager, "max_requests") or not hasattr(manager, "max_age"):
        logger.warning(
            "cannot pin the session of BentoML's client %s; batch calls may fail while it replaces sessions",
            type(async_client).__name__,
        )
        return
    manager.max_requests = sys.maxsize
    manager.max_age = float("inf")


class InternalRouteGuard:
    """ASGI middleware: 404 for `/internal/` requests without this process's token."""

    def __init__(self, app) -> None:
        self.app = app
        self.rejected = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not is_internal_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        presented = b""
        for name, value in scope.get("headers", []):
            if name.lower() == TOKEN_HEADER.encode():
                presented = value
        if hmac.compare_digest(presented, _TOKEN.encode()):
            await self.app(scope, receive, send)
            return

        self.rejected += 1
        # Count repeats instead of logging each one: a scanner can send thousands.
        if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
            logger.warning("rejected %d outside requests to internal routes (last %s)", self.rejected, scope["path"])
        body = json.dumps({"error": "not found", "field": None, "request_id": None}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
