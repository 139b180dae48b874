"""The OpenAI backend against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from service.backends import create_backend
from service.backends.base import BackendError
from service.backends.openai_backend import OpenAIBackend
from service.config import ModelConfig

API_KEY = "test-key-123"


@dataclass
class FakeServerState:
    """What the fake server received, and how it should misbehave."""

    requests: list[dict] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: int = 200
    delay_s: float = 0.1
    raw_body: bytes | None = None


def _make_handler(state: FakeServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
            pass

        def _send_json(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._send_json(401, {"error": {"message": "invalid api key"}})
                return
            self._send_json(200, {"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.auth_headers.append(self.headers.get("Authorization"))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                time.sleep(state.delay_s)
                if state.status != 200:
                    self._send_json(state.status, {"error": {"message": "model overloaded"}})
                    return
                if state.raw_body is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(state.raw_body)))
                    self.end_headers()
                    self.wfile.write(state.raw_body)
                    return
                self._send_json(200, _completion(body))
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


def _completion(body: dict) -> dict:
    """Answer with the prompt and the decoded image size, so tests can check pairing."""
    content = body["messages"][0]["content"]
    prompt = next(part["text"] for part in content if part["type"] == "text")
    url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
    header, _, encoded = url.partition(",")
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    answer = f" {prompt} {image.width}x{image.height} {header} "
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


@pytest.fixture()
def fake_server() -> Iterator[tuple[str, FakeServerState]]:
    state = FakeServerState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def backend(fake_server, monkeypatch) -> Iterator[OpenAIBackend]:
    base_url, _ = fake_server
    monkeypatch.setenv("FAKE_OPENAI_KEY", API_KEY)
    backend = OpenAIBackend(base_url, "fake-vlm", api_key_env="FAKE_OPENAI_KEY", timeout_s=5, max_image_side=64)
    backend.load()
    yield backend
    backend.close()


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (200, 100), "red"), Image.new("RGB", (50, 40), "blue"), Image.new("L", (30, 300))]


def test_batch_answers_pair_images_and_prompts(backend, fake_server):
    _, state = fake_server

    generations, timings = backend.generate(_images(), ["first", "second", "third"], max_new_tokens=5)

    # Images above 64 px are downscaled before sending; results stay in input order.
    assert [generation.text for generation in generations] == [
        "first 64x32 data:image/jpeg;base64",
        "second 50x40 data:image/jpeg;base64",
        "third 6x64 data:image/jpeg;base64",
    ]
    assert all(generation.prompt_tokens == 11 for generation in generations)
    assert all(generation.generated_tokens == 3 for generation in generations)
    assert timings.generate_s > 0
    assert timings.preprocess_s > 0
    assert {request["max_tokens"] for request in state.requests} == {5}
    assert {request["temperature"] for request in state.requests} == {0}
    assert {request["model"] for request in state.requests} == {"fake-vlm"}


def test_batch_requests_run_concurrently(backend, fake_server):
    _, state = fake_server
    state.delay_s = 0.3

    backend.generate(_images(), ["a", "b", "c"])

    assert state.max_in_flight > 1


def test_concurrency_is_bounded(fake_server, monkeypatch):
    base_url, state = fake_server
    monkeypatch.setenv("FAKE_OPENAI_KEY", API_KEY)
    backend = OpenAIBackend(base_url, "fake-vlm", api_key_env="FAKE_OPENAI_KEY", max_concurrency=2)
    backend.load()
    state.delay_s = 0.3

    generations, _ = backend.generate(_images() * 2, ["p"] * 6)

    # The bound is what matters: on a loaded machine the threads may not
    # overlap at all, so at least one request in flight is all that is certain.
    assert len(generations) == 6
    assert 1 <= state.max_in_flight <= 2
    backend.close()


def test_api_key_sent_as_bearer(backend, fake_server):
    _, state = fake_server

    backend.generate(_images()[:1], ["x"])

    assert state.auth_headers == [f"Bearer {API_KEY}"]


def test_wrong_api_key_fails_load(fake_server, monkeypatch):
    base_url, _ = fake_server
    monkeypatch.setenv("FAKE_OPENAI_KEY", "wrong")
    backend = OpenAIBackend(base_url, "fake-vlm", api_key_env="FAKE_OPENAI_KEY")

    with pytest.raises(BackendError, match="rejected the API key .HTTP 401.; set a valid key in the environment variable FAKE_OPENAI_KEY"):
        backend.load()


def test_http_error_names_status_and_body(backend, fake_server):
    _, state = fake_server
    state.status = 503

    with pytest.raises(BackendError) as raised:
        backend.generate(_images()[:2], ["x", "y"])

    message = str(raised.value)
    assert "HTTP 503" in message
    assert "model overloaded" in message
    assert "fake-vlm" in message


def test_invalid_response_raises(backend, fake_server):
    _, state = fake_server
    state.raw_body = b'{"choices": []}'

    with pytest.raises(BackendError, match="invalid chat completion"):
        backend.generate(_images()[:1], ["x"])


def test_timeout_raises(fake_server, monkeypatch):
    base_url, state = fake_server
    monkeypatch.setenv("FAKE_OPENAI_KEY", API_KEY)
    backend = OpenAIBackend(base_url, "fake-vlm", api_key_env="FAKE_OPENAI_KEY", timeout_s=0.2)
    backend.load()
    state.delay_s = 1.0

    with pytest.raises(BackendError, match="timed out after 0.2 s"):
        backend.generate(_images()[:1], ["x"])
    backend.close()


def test_unreachable_server_fails_load():
    # Bind and close a socket to get a loopback port with nothing listening.
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "fake-vlm")

    with pytest.raises(BackendError, match=f"cannot reach OpenAI-compatible server at http://127.0.0.1:{port}/v1"):
        backend.load()


def test_generate_before_load_raises():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "fake-vlm")

    with pytest.raises(BackendError, match="not loaded"):
        backend.generate(_images()[:1], ["x"])


def test_mismatched_lengths_raise(backend):
    with pytest.raises(BackendError, match="2 images but 1 prompts"):
        backend.generate(_images()[:2], ["x"])


def test_info_describes_remote_model(backend):
    info = backend.info()

    assert info.backend == "openai"
    assert info.model_id == "fake-vlm"
    assert info.max_context_tokens is None


def test_create_backend_builds_openai(fake_server):
    base_url, _ = fake_server
    config = ModelConfig(backend="openai", model_id="fake-vlm", openai_base_url=base_url, openai_timeout_s=7)

    backend = create_backend(config)

    assert isinstance(backend, OpenAIBackend)
    assert backend.base_url == base_url
    assert backend.timeout_s == 7


def test_create_backend_rejects_unknown_backend():
    config = ModelConfig.model_construct(backend="nonexistent")

    with pytest.raises(BackendError, match="unknown backend 'nonexistent'"):
        create_backend(config)
