"""A stand-in HTTP service on 127.0.0.1 for testing load generators without a model.

It answers POST /classify and /classify_batch with a minimal ClassifyResult-shaped
body after `delay_s`, fails every `fail_every`-th request with `fail_status`,
and records how many requests were in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class StubState:
    delay_s: float = 0.0
    fail_every: int = 0
    fail_status: int = 503
    received: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (base class signature)
            pass

        def _send(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == "/taxonomies":
                self._send(200, {"taxonomies": []})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            with state.lock:
                state.received += 1
                number = state.received
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.paths.append(self.path)
            try:
                time.sleep(state.delay_s)
                if state.fail_every and number % state.fail_every == 0:
                    self._send(state.fail_status, {"error": "stub failure"})
                elif self.path == "/classify_batch":
                    self._send(200, {"results": []})
                else:
                    self._send(200, {"request_id": f"stub-{number}", "labels": [{"id": "n0", "index": 0, "name": "x", "score": 1.0}]})
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


@contextmanager
def stub_service(delay_s: float = 0.0, fail_every: int = 0, fail_status: int = 503) -> Iterator[tuple[str, StubState]]:
    """Serve the stub on a free port of 127.0.0.1; yield its base URL and its state."""
    state = StubState(delay_s=delay_s, fail_every=fail_every, fail_status=fail_status)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
