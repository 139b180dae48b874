"""Optional API key for the HTTP API, as ASGI middleware.

With the key's environment variable set (server.api_key_env), every request
must send `Authorization: Bearer <key>`, `X-API-Key: <key>` or HTTP Basic
credentials with the key as password (any user name). Basic is what a browser
and Label Studio's ML backend settings can send, so the review page under
/assist and the Label Studio API under /labelstudio work with a key too. Health
endpoints stay open so orchestrators can probe; /metrics stays open unless
server.protect_metrics is true. The key is compared in constant time and never
logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging

from service.config import Config

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})


# Paths a person opens in a browser: a 401 there asks the browser for Basic credentials.
BROWSER_PATH_PREFIXES = ("/assist", "/labelstudio")


def extract_key(headers: dict[str, str]) -> str | None:
    """Return the key from a Bearer token, Basic credentials (the password) or X-API-Key."""
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, separator, password = decoded.partition(":")
        return password if separator else None
    return headers.get("x-api-key")


def key_matches(presented: str | None, expected: str) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class ApiKeyMiddleware:
    def __init__(self, app, config: Config) -> None:
        self.app = app
        self.config = config
        self.expected = config.api_key()
        self.rejected = 0

    async def __call__(self, scope, receive, send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return

        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        if key_matches(extract_key(headers), self.expected):
            await self.app(scope, receive, send)
            return

        self.rejected += 1
        # Count repeats instead of logging each one: a scanner can send thousands.
        if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
            logger.warning("rejected %d requests without a valid API key (last path %s)", self.rejected, scope["path"])
        body = json.dumps({"error": "missing or invalid API key; send Authorization: Bearer <key>", "field": None}).encode()
        challenge = b'Basic realm="mllm-classify"' if scope["path"].startswith(BROWSER_PATH_PREFIXES) else b"Bearer"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", challenge)],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _is_open(self, path: str) -> bool:
        if path in OPEN_PATHS:
            return True
        return path == "/metrics" and not self.config.server.protect_metrics
