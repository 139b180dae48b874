"""Reject request bodies above a per-route byte limit before they are read whole.

BentoML parses a multipart upload into memory before the API function runs, so
an image size check in the API comes too late to protect the worker. This ASGI
middleware runs first. It rejects a request whose Content-Length is over the
limit without reading any of the body, and it counts the bytes of bodies
without a Content-Length (chunked uploads), stopping at the first chunk past
the limit. Both cases get a 413 with the service's JSON error body.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping

from service.config import Config

logger = logging.getLogger("mllm_classify.body_limit")

# Room for the multipart boundaries, part headers and the small form fields
# (protocol, taxonomy, top_k, ...) next to the image itself.
FORM_OVERHEAD_BYTES = 64 * 1024
PART_OVERHEAD_BYTES = 1024

# Worst case bytes per candidate character in a JSON form field: a \uXXXX escape.
JSON_ESCAPE_BYTES_PER_CHAR = 6

# Bodies of every other route: JSON documents such as assist decisions.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes its limit."""


def route_limits(config: Config) -> dict[str, int]:
    """Return the body limit in bytes of each upload route, derived from the limits section."""
    limits = config.limits
    form_bytes = FORM_OVERHEAD_BYTES + limits.max_candidates * limits.max_candidate_chars * JSON_ESCAPE_BYTES_PER_CHAR
    one_image = limits.max_image_bytes + PART_OVERHEAD_BYTES + form_bytes
    many_images = limits.max_images_per_request * (limits.max_image_bytes + PART_OVERHEAD_BYTES) + form_bytes
    return {
        "/classify": one_image,
        "/assist/suggest": one_image,
        "/classify_batch": many_images,
    }


def _error_message(limit: int, size: int | None) -> bytes:
    if size is None:
        text = f"the request body is above the limit of {limit} bytes for this endpoint; send a smaller image"
    else:
        text = f"the request body is {size} bytes, above the limit of {limit} bytes for this endpoint; send a smaller image"
    body = {"error": text, "field": "body", "request_id": uuid.uuid4().hex}
    return json.dumps(body).encode()


class BodyLimitMiddleware:
    """ASGI middleware enforcing `route_limits(config)`, and `default_limit` on other routes."""

    def __init__(
        self,
        app,
        config: Config,
        limits: Mapping[str, int] | None = None,
        default_limit: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.limits = dict(limits if limits is not None else route_limits(config))
        self.default_limit = default_limit
        self.rejected = 0

    def limit_for(self, path: str) -> int:
        return self.limits.get(path.rstrip("/") or "/", self.default_limit)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        limit = self.limit_for(scope["path"])
        declared = self._content_length(scope)
        if declared == -1:
            await self._send_json(send, 400, b'{"error": "invalid Content-Length header", "field": "body", "request_id": null}')
            return
        if declared is not None and declared > limit:
            self._log_rejection(scope["path"], limit, declared)
            await self._send_json(send, 413, _error_message(limit, declared))
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message) -> None:
            nonlocal response_started
            if exceeded:
                # The app caught BodyTooLarge and sends its own error response,
                # so send the 413 in its place, once.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await self._send_json(send, 413, _error_message(limit, None))
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # The app may re-raise BodyTooLarge or wrap it in its own error.
            if not exceeded:
                raise
        if exceeded:
            self._log_rejection(scope["path"], limit, received)
            if not response_started:
                await self._send_json(send, 413, _error_message(limit, None))

    @staticmethod
    def _content_length(scope) -> int | None:
        """Return the declared body size, None when absent, or -1 when the header is malformed."""
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return -1
                return size if size >= 0 else -1
        return None

    def _log_rejection(self, path: str, limit: int, size: int) -> None:
        self.rejected += 1
        # Count repeats instead of logging each one: a client can retry in a loop.
        if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
            logger.warning("rejected %d request bodies over their limit (last: %s, %d > %d bytes)", self.rejected, path, size, limit)

    @staticmethod
    async def _send_json(send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is never read, so the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
