"""Locust user classes for the classification service.

- `SteadyUser`: one open-protocol /classify request per second per user.
- `ProtocolMixUser`: open, closed, choice and multilabel requests, batches and
  GET /taxonomies, weighted the way a mixed client population might send them.
- `BurstUser`: requests back to back with no wait, for the burst shape in `burst.py`.
- `GrpcClassifyUser` (in `locust_grpc.py`): the same request over gRPC.

A response counts as a failure unless it is HTTP 200 with a result that names
labels and a request id, so the failure count in the CSV is the number of
requests a client could not use. Only Locust processes import this module.
"""

from __future__ import annotations

import json
import random

from locust import HttpUser, between, constant, constant_pacing, task

from loadtests import locust_hooks  # noqa: F401  (registers the loopback check and the hard stops)
from loadtests.payloads import sample_jpegs

# ImageNet-1k class ids (WordNet ids): tabby cat, espresso, missile, goldfish, golden retriever.
CANDIDATE_IDS: tuple[str, ...] = ("n02123045", "n07920052", "n03773504", "n01443537", "n02099601")


class ClassifyUser(HttpUser):
    """Base class: helpers that send one request and check its body."""

    abstract = True

    def _image(self) -> tuple[str, bytes]:
        return random.choice(sample_jpegs())

    def classify(self, form: dict[str, str], name: str) -> None:
        """POST one image to /classify and fail the request unless the body is a ClassifyResult."""
        file_name, image = self._image()
        with self.client.post(
            "/classify",
            files={"image": (file_name, image, "image/jpeg")},
            data=form,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                body = response.json()
            except json.JSONDecodeError:
                response.failure("response is not JSON")
                return
            if not isinstance(body.get("labels"), list) or not body.get("request_id"):
                response.failure(f"response has no labels or request_id: {response.text[:200]}")

    def classify_batch(self, form: dict[str, str], size: int, name: str) -> None:
        """POST `size` images to /classify_batch and fail unless it returns one result per image."""
        files = []
        for _ in range(size):
            file_name, image = self._image()
            files.append(("images", (file_name, image, "image/jpeg")))
        with self.client.post("/classify_batch", files=files, data=form, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                results = response.json().get("results")
            except json.JSONDecodeError:
                response.failure("response is not JSON")
                return
            if not isinstance(results, list) or len(results) != size:
                response.failure(f"expected {size} results, got {response.text[:200]}")


class SteadyUser(ClassifyUser):
    """One open-protocol request per second per user, as long as the service keeps up."""

    wait_time = constant_pacing(1.0)

    @task
    def classify_open(self) -> None:
        self.classify({"protocol": "open", "top_k": "3"}, name="/classify open")


class BurstUser(ClassifyUser):
    """Requests back to back; the user count of the burst shape sets the load."""

    wait_time = constant(0)

    @task
    def classify_open(self) -> None:
        self.classify({"protocol": "open"}, name="/classify open")


class ProtocolMixUser(ClassifyUser):
    """A mix of protocols, batch requests and metadata reads."""

    wait_time = between(0.2, 1.0)

    @task(4)
    def classify_open(self) -> None:
        self.classify({"protocol": "open", "top_k": "3"}, name="/classify open")

    @task(2)
    def classify_closed(self) -> None:
        self.classify({"protocol": "closed", "candidates": json.dumps(list(CANDIDATE_IDS))}, name="/classify closed")

    @task(2)
    def classify_choice(self) -> None:
        self.classify({"protocol": "choice", "num_options": "4", "seed": str(random.randrange(1000))}, name="/classify choice")

    @task(1)
    def classify_multilabel(self) -> None:
        self.classify({"protocol": "multilabel"}, name="/classify multilabel")

    @task(1)
    def classify_open_batch(self) -> None:
        self.classify_batch({"protocol": "open"}, size=3, name="/classify_batch open x3")

    @task(1)
    def list_taxonomies(self) -> None:
        with self.client.get("/taxonomies", name="/taxonomies", catch_response=True) as response:
            if response.status_code != 200 or "taxonomies" not in response.text:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
