"""The bad-input suite: crafted uploads and parameters over HTTP and gRPC, then good requests.

Every case asserts the status (HTTP) or code (gRPC), the field the error
names and its message. The good requests at the end prove the service kept
working after all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import httpx
import pytest

from service.grpc.client import GrpcClient, GrpcClientError
from service.schemas import ClassifyParams
from tests.hardening import crafted
from tests.hardening.conftest import API_KEY, LIMITS
from tests.hardening.local_http import local_http_server

pytestmark = pytest.mark.slow

GOOD = crafted.encode(crafted.photo(), "PNG")
REJECTED = crafted.rejected_images(LIMITS["max_image_pixels"])
ACCEPTED = crafted.accepted_images()


@dataclass
class HttpCase:
    """One crafted HTTP request: keyword arguments of httpx.Client.post and the expected error."""

    name: str
    status: int
    message: str
    error_field: str | None
    files: object = None
    data: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/classify"


def image_file(data: bytes, name: str = "upload.png", content_type: str = "image/png") -> dict:
    return {"image": (name, data, content_type)}


def params_case(name: str, data: dict[str, str], message: str, error_field: str) -> HttpCase:
    return HttpCase(name, 400, message, error_field, files=image_file(GOOD), data=data)


def chunked(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def multipart_body(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def http_cases() -> list[HttpCase]:
    too_many = json.dumps([f"n0{index:07d}" for index in range(LIMITS["max_candidates"] + 1)])
    # Just over the image limit the body still fits the route limit, so the
    # image check rejects it; far over it, the body limit does.
    over_image = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMITS["max_image_bytes"] + 1024)
    over_body = b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMITS["max_image_bytes"] + 512 * 1024)
    cases = [
        HttpCase(f"image {name}", 400, message, "image", files=image_file(data)) for name, data, message in REJECTED
    ]
    cases += [
        params_case("unknown protocol", {"protocol": "telepathy"}, "protocol", "protocol"),
        params_case("unknown taxonomy", {"taxonomy": "no-such-taxonomy"}, "unknown taxonomy 'no-such-taxonomy'", "taxonomy"),
        params_case("top_k zero", {"top_k": "0"}, "top_k", "top_k"),
        params_case("top_k above max", {"top_k": "500"}, "above the maximum of 20", "top_k"),
        params_case("top_k not integer", {"top_k": "five"}, "valid integer", "top_k"),
        params_case("top_k float overflow", {"top_k": "1e400"}, "top_k", "top_k"),
        params_case("seed not integer", {"seed": "x"}, "valid integer", "seed"),
        params_case("num_options too small", {"num_options": "1"}, "num_options", "num_options"),
        params_case("max_new_tokens zero", {"max_new_tokens": "0"}, "max_new_tokens", "max_new_tokens"),
        params_case("candidates empty list", {"candidates": "[]"}, "empty list", "candidates"),
        params_case("candidates duplicated", {"candidates": '["tabby cat", "Tabby  Cat"]'}, "listed twice", "candidates"),
        params_case("candidates too many", {"candidates": too_many}, f"above the limit of {LIMITS['max_candidates']}", "candidates"),
        params_case("candidate huge", {"candidates": json.dumps(["x" * 5000])}, "5000 characters, above the limit", "candidates"),
        params_case("candidate non-printable", {"candidates": '["tabby\\u0000cat"]'}, "non-printable", "candidates"),
        params_case("candidate empty string", {"candidates": '["tabby cat", "  "]'}, "empty string", "candidates"),
        params_case("candidates malformed JSON", {"candidates": '["tabby cat"'}, "not a valid JSON array", "candidates"),
        params_case("candidates JSON object", {"candidates": '{"a": 1}'}, "invalid candidates: .*valid list", "candidates"),
        params_case("candidates JSON numbers", {"candidates": "[1, 2]"}, "invalid candidates: .*valid string", "candidates"),
        params_case("candidate unknown class", {"candidates": '["tabby cat", "unicorn wizard"]'}, "unicorn wizard", "candidates"),
        HttpCase("no image field", 400, "image is missing", "image",
                 content=multipart_body("b3", [("protocol", None, b"open")]),
                 headers={"content-type": "multipart/form-data; boundary=b3"}),
        HttpCase("urlencoded without image", 415, "form-urlencoded", "body", data={"protocol": "open"}),
        # BentoML would download a plain value in a file field as a URL.
        HttpCase("image field as URL value", 400, "must be uploaded as a file", "body",
                 content=multipart_body("b2", [("image", None, b"http://127.0.0.1:9/x.png")]),
                 headers={"content-type": "multipart/form-data; boundary=b2"}),
        HttpCase("urlencoded image URL", 415, "form-urlencoded bodies cannot carry the image", "body",
                 data={"image": "http://127.0.0.1:9/x.png"}),
        HttpCase("image_url host not allowlisted", 400, "not in the fetch allowlist", "image_url",
                 path="/classify_url", data={"image_url": "http://127.0.0.1:9/x.png"}),
        HttpCase("image_url scheme file", 400, "scheme 'file' is not allowed", "image_url",
                 path="/classify_url", data={"image_url": "file:///etc/passwd"}),
        HttpCase("image_url missing", 400, "image_url is missing", "image_url",
                 path="/classify_url", data={"protocol": "open"}),
        HttpCase("json image path", 400, "invalid image", "image",
                 content=b'{"image": "/etc/passwd"}', headers={"content-type": "application/json"}),
        HttpCase("json body without image", 400, "image is missing", "image",
                 content=b'{"protocol": "open"}', headers={"content-type": "application/json"}),
        HttpCase("malformed json body", 400, "not valid JSON", "body",
                 content=b'{"protocol": ', headers={"content-type": "application/json"}),
        HttpCase("text/plain body", 415, "unsupported Content-Type 'text/plain'", "body",
                 content=b"hello", headers={"content-type": "text/plain"}),
        HttpCase("pickle body", 415, "unsupported Content-Type", "body",
                 content=b"\x80\x04N.", headers={"content-type": "application/vnd.bentoml+pickle"}),
        HttpCase("multipart without boundary", 400, "no boundary", "body",
                 content=b"garbage", headers={"content-type": "multipart/form-data"}),
        HttpCase("multipart garbage", 400, "multipart body is malformed", "body",
                 content=b"garbage", headers={"content-type": "multipart/form-data; boundary=xyz"}),
        HttpCase("form field sent as file", 400, "'top_k' must be a plain value", "body",
                 content=multipart_body("b0", [("image", "a.png", GOOD), ("top_k", "k.bin", b"\xff\xfe\x00")]),
                 headers={"content-type": "multipart/form-data; boundary=b0"}),
        HttpCase("image over byte limit", 400, f"above the limit of {LIMITS['max_image_bytes']} bytes", "image",
                 files=image_file(over_image)),
        HttpCase("upload over body limit", 413, "above the limit of", "body", files=image_file(over_body)),
        HttpCase("chunked upload over body limit", 413, "above the limit of", "body",
                 content=chunked(multipart_body("b1", [("image", "a.png", over_body)])),
                 headers={"content-type": "multipart/form-data; boundary=b1"}),
        HttpCase("batch over image count", 400, "above the limit of 4 per request", "images", path="/classify_batch",
                 files=[("images", (f"{index}.png", GOOD, "image/png")) for index in range(5)]),
        HttpCase("batch without images", 400, "images is missing", "images", path="/classify_batch",
                 content=multipart_body("b4", [("protocol", None, b"open")]),
                 headers={"content-type": "multipart/form-data; boundary=b4"}),
    ]
    return cases


HTTP_CASES = http_cases()


@pytest.fixture(scope="module")
def http(hardened_service):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=hardened_service.url, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(hardened_service):
    with GrpcClient(hardened_service.grpc_target, api_key=API_KEY, max_attempts=1) as client:
        client.wait_for_serving(timeout_s=120)
        yield client


@pytest.mark.parametrize("case", HTTP_CASES, ids=[case.name for case in HTTP_CASES])
def test_http_bad_input(http: httpx.Client, case: HttpCase) -> None:
    response = http.post(case.path, files=case.files, data=case.data or None, content=case.content, headers=case.headers)

    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"error", "field", "request_id"}, body
    assert re.search(case.message, body["error"]), body["error"]
    assert body["field"] == case.error_field
    assert body["request_id"]


def test_http_bad_input_count() -> None:
    assert len(HTTP_CASES) >= 40


@pytest.mark.parametrize(("name", "data", "message"), REJECTED, ids=[case[0] for case in REJECTED])
def test_grpc_bad_image(grpc_client: GrpcClient, name: str, data: bytes, message: str) -> None:
    with pytest.raises(GrpcClientError) as raised:
        grpc_client.classify(data)

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, raised.value.message), raised.value.message
    assert raised.value.field == "image"


GRPC_PARAM_CASES: list[tuple[str, Callable[[], ClassifyParams | dict], str, str]] = [
    ("unknown taxonomy", lambda: {"taxonomy": "no-such-taxonomy"}, "unknown taxonomy", "taxonomy"),
    ("top_k zero", lambda: {"top_k": 0}, "top_k", "top_k"),
    ("top_k above max", lambda: {"top_k": 500}, "above the maximum of 20", "top_k"),
    ("num_options too many", lambda: {"num_options": 27}, "num_options", "num_options"),
    ("max_new_tokens too many", lambda: {"max_new_tokens": 100000}, "max_new_tokens", "max_new_tokens"),
    ("candidates duplicated", lambda: {"candidates": ["tabby cat", "TABBY CAT"]}, "listed twice", "candidates"),
    ("candidates too many", lambda: {"candidates": [f"c{index}" for index in range(11)]}, "above the limit of 10", "candidates"),
    ("candidate huge", lambda: {"candidates": ["y" * 5000]}, "above the limit", "candidates"),
    ("candidate non-printable", lambda: {"candidates": ["tabby\x07cat"]}, "non-printable", "candidates"),
    ("candidate unknown class", lambda: {"candidates": ["tabby cat", "unicorn wizard"]}, "unicorn wizard", "candidates"),
]


def raw_classify(target: str, image: bytes, params: dict, request_id: str = "", protocol: str = "") -> grpc.RpcError | None:
    """Send a ClassifyRequest built field by field, so invalid values reach the server unchecked."""
    from service.grpc.generated import classifier_pb2 as pb
    from service.grpc.generated import classifier_pb2_grpc as pb_grpc

    message = pb.ClassifyParams(protocol=protocol, **params)
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
        stub = pb_grpc.ClassifierStub(channel)
        try:
            stub.Classify(
                pb.ClassifyRequest(image=image, params=message, request_id=request_id),
                timeout=60,
                metadata=(("authorization", f"Bearer {API_KEY}"),),
            )
        except grpc.RpcError as error:
            return error
    return None


@pytest.mark.parametrize(("name", "build", "message", "error_field"), GRPC_PARAM_CASES, ids=[case[0] for case in GRPC_PARAM_CASES])
def test_grpc_bad_params(hardened_service, name: str, build, message: str, error_field: str) -> None:
    error = raw_classify(hardened_service.grpc_target, GOOD, build())

    assert error is not None, "the call succeeded"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, error.details()), error.details()
    assert dict(error.trailing_metadata()).get("error-field") == error_field


def test_grpc_unknown_protocol(hardened_service) -> None:
    error = raw_classify(hardened_service.grpc_target, GOOD, {}, protocol="telepathy")

    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protocol" in error.details()


def test_grpc_invalid_request_id(hardened_service) -> None:
    error = raw_classify(hardened_service.grpc_target, GOOD, {}, request_id="bad id\n with spaces")

    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata()).get("error-field") == "request_id"


def test_grpc_image_over_byte_limit(grpc_client: GrpcClient) -> None:
    with pytest.raises(GrpcClientError) as raised:
        grpc_client.classify(b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMITS["max_image_bytes"] + 1024))

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"above the limit of {LIMITS['max_image_bytes']} bytes" in raised.value.message


def test_grpc_missing_api_key(hardened_service) -> None:
    with GrpcClient(hardened_service.grpc_target, max_attempts=1) as client:
        with pytest.raises(GrpcClientError) as raised:
            client.classify(GOOD)

    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": API_KEY[:-1]}])
def test_http_rejects_missing_or_wrong_key(hardened_service, headers: dict[str, str]) -> None:
    response = httpx.post(f"{hardened_service.url}/classify", files=image_file(GOOD), headers=headers, timeout=30)

    assert response.status_code == 401
    assert "API key" in response.json()["error"]


def test_http_image_url_loopback_rejected(http: httpx.Client) -> None:
    # "localhost" is allowlisted, but it resolves to loopback and the service
    # runs without the test-only override, so nothing is fetched.
    with local_http_server() as (port, requests):
        response = http.post("/classify_url", data={"image_url": f"http://localhost:{port}/image.png"})

    assert response.status_code == 400
    assert "loopback address" in response.json()["error"]
    assert response.json()["field"] == "image_url"
    assert requests == []


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_http_accepts_unusual_image(http: httpx.Client, name: str) -> None:
    response = http.post("/classify", files=image_file(ACCEPTED[name]), data={"top_k": "3"})

    assert response.status_code == 200, response.text
    assert response.json()["labels"] or response.json()["abstain"]


@pytest.mark.parametrize("name", ["cmyk-jpeg", "16-bit-png", "palette-png", "animated-webp", "exif-rotated-jpeg"])
def test_grpc_accepts_unusual_image(grpc_client: GrpcClient, name: str) -> None:
    result = grpc_client.classify(ACCEPTED[name], ClassifyParams(top_k=3))

    assert result.labels or result.abstain


def test_good_requests_after_bad_inputs(http: httpx.Client, grpc_client: GrpcClient, demo_photos) -> None:
    response = http.post("/classify", files=image_file(demo_photos["cat"]), data={"top_k": "3"})
    assert response.status_code == 200, response.text
    assert response.json()["labels"]

    result = grpc_client.classify(demo_photos["coffee"], ClassifyParams(top_k=3))
    assert result.labels


def test_api_key_never_logged(hardened_service) -> None:
    log = hardened_service.process.log_text()

    assert log, "the service log is empty"
    assert API_KEY not in log
    assert API_KEY[:-1] not in log
