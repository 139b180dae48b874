"""Helpers of the gRPC tests: PNG encoding, a startup health probe and /metrics parsing.

A plain module, not a package: a `tests/grpc` package would shadow the grpc library.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass, field

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def metric_samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Return (labels, value) of every sample called `name` in Prometheus text output."""
    samples = []
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                samples.append((dict(sample.labels), sample.value))
    return samples


def metric_total(metrics_text: str, name: str, **labels: str) -> float:
    """Sum the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for sample_labels, value in metric_samples(metrics_text, name)
        if all(sample_labels.get(key) == expected for key, expected in labels.items())
    )


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10.0)
    response.raise_for_status()
    return response.text


@dataclass
class StartupProbe:
    """Health statuses and Classify codes seen on a gRPC port while the service starts."""

    port: int
    image: bytes
    statuses: list[str] = field(default_factory=list)
    classify_codes: list[grpc.StatusCode] = field(default_factory=list)
    classify_messages: list[str] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="grpc-startup-probe", daemon=True)
        self.thread.start()

    def wait(self, timeout_s: float) -> None:
        """Wait up to timeout_s for the probe to see SERVING, then stop it."""
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _port_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _run(self) -> None:
        # Wait for the port with plain TCP connects: a gRPC channel that fails
        # to connect backs off for a second or more and could miss the window.
        while not self.stop_event.is_set() and not self._port_open():
            time.sleep(0.01)
        if self.stop_event.is_set():
            return

        with grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[("grpc.enable_retries", 0)]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            classifier = pb_grpc.ClassifierStub(channel)
            while not self.stop_event.is_set():
                try:
                    response = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                except grpc.RpcError as error:
                    self.statuses.append(error.code().name)
                    time.sleep(0.01)
                    continue
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                self.statuses.append(status)
                if status == "SERVING":
                    return
                self._try_classify(classifier)

    def _try_classify(self, classifier: pb_grpc.ClassifierStub) -> None:
        try:
            classifier.Classify(pb.ClassifyRequest(image=self.image), timeout=30)
        except grpc.RpcError as error:
            self.classify_codes.append(error.code())
            self.classify_messages.append(error.details() or "")
        else:
            self.classify_codes.append(grpc.StatusCode.OK)
