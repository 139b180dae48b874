"""Give every error of the classify routes the service's JSON error body.

BentoML 1.4.40 (`_bentoml_impl/server/app.py`, `api_endpoint_wrapper`) responds to
input it cannot parse in its own shapes: `{"error": "1 validation error for
Input", "detail": [...]}` for a wrong field type or a missing file, a JSON list
for an unsupported media type, and a 500 for any exception while reading the
form, such as a malformed multipart body. This middleware makes all of them
`{"error", "field", "request_id"}` like the errors the service raises itself:

- It rejects unsupported Content-Types (415) and multipart bodies without a
  boundary (400) before the body is read.
- It runs a second multipart parser over the body as BentoML reads it, which
  keeps no data and only records the first problem it finds. When BentoML then
  answers 500, that problem is the cause and the response becomes a 400
  naming it. A 500 without such a problem stays a 500.
- It rejects a plain form value in a file field (`image`, `images`) while
  the body streams in, and form-urlencoded bodies on the upload routes. BentoML 1.4.40 (`MultipartSerde.ensure_file` in
  `_bentoml_impl/serde.py`) would treat such a value as a URL and download
  it, which would bypass the `fetch` allowlist.
- It rewrites BentoML's validation errors to name the first invalid field.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

logger = logging.getLogger("mllm_classify.error_bodies")

# Upload routes and their file fields; every other form field must be a plain value.
FILE_FIELDS = {
    "/classify": frozenset({"image"}),
    "/classify_batch": frozenset({"images"}),
    "/classify_url": frozenset(),
}

# Plain form fields of each upload route. A field outside this list, or one
# given twice, is rejected: BentoML would ignore the first silently and use
# only the last value of a repeated one.
PARAMETER_FIELDS = frozenset({"protocol", "taxonomy", "candidates", "top_k", "seed", "num_options", "max_new_tokens"})
FORM_FIELDS = {
    "/classify": PARAMETER_FIELDS | {"image"},
    "/classify_batch": PARAMETER_FIELDS | {"images"},
    "/classify_url": PARAMETER_FIELDS | {"image_url"},
}
# Fields that may repeat: one part per uploaded image.
REPEATABLE_FIELDS = frozenset({"images"})

ACCEPTED_MEDIA_TYPES = frozenset({"multipart/form-data", "application/json", "application/x-www-form-urlencoded"})

# Bytes of a plain form field checked for valid UTF-8. Longer values are
# checked up to here, and the parameter checks reject them later.
MAX_CHECKED_FIELD_BYTES = 1024 * 1024


class UploadRejected(Exception):
    """Raised from `receive` to stop BentoML parsing a form that must not be acted on."""


class _MultipartShadow:
    """Parse a multipart body alongside BentoML and record the first problem in it."""

    def __init__(
        self, boundary: bytes, file_fields: frozenset[str], max_parts: int, form_fields: frozenset[str] | None = None
    ) -> None:
        self.file_fields = file_fields
        self.form_fields = form_fields
        self.max_parts = max_parts
        self.problem: str | None = None
        # The form field the problem is about, where there is one.
        self.problem_field: str | None = None
        self._seen_fields: set[str] = set()
        # True when the problem must stop the request before BentoML acts on the form.
        self.blocking = False
        self.parts = 0
        self.ended = False
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""
        self._field_data = bytearray()
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def feed(self, chunk: bytes, more_body: bool) -> None:
        if self.problem is None and chunk:
            try:
                self._parser.write(chunk)
            except MultipartParseError as error:
                self.problem = f"the multipart body is malformed: {error}"
        if not more_body and self.problem is None and not self.ended:
            self.problem = "the multipart body ends before its closing boundary"

    def _on_part_begin(self) -> None:
        self.parts += 1
        self._disposition = b""
        self._field_data.clear()
        if self.parts > self.max_parts and self.problem is None:
            self.problem = f"the multipart body has more than {self.max_parts} parts"

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        room = MAX_CHECKED_FIELD_BYTES - len(self._field_data)
        if room > 0:
            self._field_data += data[start : min(end, start + room)]

    def _on_part_end(self) -> None:
        if self.problem is not None:
            return
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")
        is_file = b"filename" in options
        if self.form_fields is not None and self._reject_field_name(name):
            return
        if is_file and name not in self.file_fields:
            self.problem = f"form field {name!r} must be a plain value, not a file"
            return
        if not is_file and name in self.file_fields:
            self.problem = f"{name} must be uploaded as a file; image URLs are not fetched from this field"
            self.blocking = True
            return
        if not is_file:
            try:
                bytes(self._field_data).decode("utf-8")
            except UnicodeDecodeError:
                self.problem = f"form field {name!r} is not valid UTF-8 text"

    def _on_end(self) -> None:
        self.ended = True

    def _reject_field_name(self, name: str) -> bool:
        """Record a blocking problem for an unknown or repeated field; return whether there was one."""
        if name not in (self.form_fields or ()):
            known = ", ".join(sorted(self.form_fields or ()))
            self.problem = f"unknown form field {name!r}; the fields are: {known}"
        elif name in self._seen_fields and name not in REPEATABLE_FIELDS:
            hint = "; send several images to /classify_batch as 'images'" if name == "image" else ""
            self.problem = f"form field {name!r} is given more than once{hint}"
            if name == "candidates":
                self.problem += "; send all candidates in one field as a JSON array"
        else:
            self._seen_fields.add(name)
            return False
        self.problem_field = name
        self.blocking = True
        return True


def _validation_error(details: list) -> tuple[str, str]:
    """Return the message and field of the first invalid field in a pydantic error list."""
    entries = [entry for entry in details if isinstance(entry, dict)] or [{}]
    first = entries[0]
    location = [str(part) for part in first.get("loc", [])]
    field = location[0] if location else "body"
    kind = first.get("type", "")
    text = first.get("msg", "invalid value")

    if kind == "missing" and field in ("image", "images"):
        message = f"{field} is missing; send the image as the multipart file field {field!r}"
    elif kind == "missing":
        message = f"{field} is missing"
    elif kind == "json_invalid":
        field = "body"
        message = f"the request body is not valid JSON ({text}); send multipart/form-data with the image as file field 'image'"
    else:
        # A field typed as a union gets one error per member type, such as
        # candidates: "list[str]" and "str"; list every distinct reason.
        reasons = [entry.get("msg", "invalid value") for entry in entries if _field_of(entry) == field]
        message = f"invalid {field}: {', or '.join(dict.fromkeys(reasons))}"

    other_fields = {_field_of(entry) for entry in entries} - {field, "body"}
    if other_fields:
        message += f" (and {len(other_fields)} more invalid fields: {', '.join(sorted(other_fields))})"
    return message, field


def _field_of(entry: dict) -> str:
    location = entry.get("loc") or ["body"]
    return str(location[0])


def normalize_error(
    status: int, body: bytes, multipart_problem: str | None, problem_field: str | None = None
) -> tuple[int, dict] | None:
    """Return the status and service error body for a BentoML error response, or None to keep it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "request_id" in data:
        return None

    if status == HTTPStatus.INTERNAL_SERVER_ERROR and multipart_problem is not None:
        return HTTPStatus.BAD_REQUEST, {"error": multipart_problem, "field": problem_field or "body"}

    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("detail"), list) and data["detail"]:
        message, field = _validation_error(data["detail"])
        return status, {"error": message, "field": field}

    message = data.get("error") if isinstance(data, dict) else None
    return status, {"error": str(message or HTTPStatus(status).phrase), "field": None}


class ErrorBodyMiddleware:
    """ASGI middleware for the routes in FILE_FIELDS; passes every other request through."""

    def __init__(self, app, max_parts: int) -> None:
        self.app = app
        self.max_parts = max_parts

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "").rstrip("/")
        if scope["type"] != "http" or path not in FILE_FIELDS or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return

        content_type = self._header(scope, b"content-type")
        media_type, options = parse_options_header(content_type or b"")
        media_type_text = media_type.decode("latin-1").lower()
        if content_type is not None and media_type_text not in ACCEPTED_MEDIA_TYPES:
            await self._send_error(
                send, 415, f"unsupported Content-Type {media_type_text!r}; send multipart/form-data", "body"
            )
            return

        if media_type_text == "application/x-www-form-urlencoded" and FILE_FIELDS[path]:
            # Such a body cannot carry a file, and BentoML would download a URL
            # given as the image value.
            await self._send_error(
                send, 415, "form-urlencoded bodies cannot carry the image file; send multipart/form-data", "body"
            )
            return

        shadow = None
        if media_type_text == "multipart/form-data":
            boundary = options.get(b"boundary")
            if not boundary:
                await self._send_error(send, 400, "the multipart Content-Type has no boundary parameter", "body")
                return
            shadow = _MultipartShadow(boundary, FILE_FIELDS[path], self.max_parts, FORM_FIELDS[path])

        async def shadow_receive():
            message = await receive()
            if shadow is not None and message["type"] == "http.request":
                shadow.feed(message.get("body", b""), message.get("more_body", False))
                if shadow.blocking:
                    raise UploadRejected(shadow.problem)
            return message

        held_start: dict | None = None
        held_body = bytearray()

        async def normalizing_send(message) -> None:
            nonlocal held_start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                    return
                held_start = message
                return
            if held_start is None or message["type"] != "http.response.body":
                await send(message)
                return

            held_body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_normalized(send, held_start, bytes(held_body), shadow)

        try:
            await self.app(scope, shadow_receive, normalizing_send)
        except UploadRejected as error:
            # Only reached when BentoML lets the exception escape instead of answering 500.
            if held_start is None:
                await self._send_error(send, 400, str(error), (shadow.problem_field if shadow else None) or "body")

    @staticmethod
    def _header(scope, name: bytes) -> bytes | None:
        for key, value in scope.get("headers", []):
            if key.lower() == name:
                return value
        return None

    async def _send_normalized(self, send, start: dict, body: bytes, shadow: _MultipartShadow | None) -> None:
        problem = shadow.problem if shadow else None
        normalized = normalize_error(start["status"], body, problem, shadow.problem_field if shadow else None)
        if normalized is None:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return

        status, payload = normalized
        if status != start["status"]:
            logger.info("answered BentoML's %d with %d: %s", start["status"], status, payload["error"])
        payload["request_id"] = uuid.uuid4().hex
        encoded = json.dumps(payload).encode()
        passed_headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name.lower() not in (b"content-length", b"content-type")
        ]
        headers = [*passed_headers, (b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]
        await send({"type": "http.response.start", "status": int(status), "headers": headers})
        await send({"type": "http.response.body", "body": encoded})

    @staticmethod
    async def _send_error(send, status: int, message: str, field: str | None) -> None:
        encoded = json.dumps({"error": message, "field": field, "request_id": uuid.uuid4().hex}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": encoded})
