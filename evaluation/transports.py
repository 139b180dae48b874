"""Ways the runner reaches a model: in-process Engine, HTTP service or gRPC service.

Each transport takes one batch of images with one parameter set per image and
returns one result (or the exception that image failed with) per image, plus
the wall time of the whole batch.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from evaluation.datasets import encode_image
from service.schemas import ClassifyParams, ClassifyResult

logger = logging.getLogger(__name__)

BatchOutput = tuple[list[ClassifyResult | Exception], float]

# HTTP requests rejected as busy (429, 503) are sent again after 2 s, then 4 s.
# The gRPC client retries such statuses itself.
MAX_ATTEMPTS = 3
RETRY_DELAY_S = 2.0


class Transport(abc.ABC):
    """Sends a batch of images to a model and collects the results."""

    name: str = ""

    @abc.abstractmethod
    def classify(self, images: Sequence[Image.Image], params: Sequence[ClassifyParams]) -> BatchOutput:
        """Classify images[i] with params[i]; return results in order and the batch wall time in ms."""

    @abc.abstractmethod
    def model_name(self) -> str:
        """Return the model id for reports."""

    def close(self) -> None:
        """Release connections; the default has nothing to release."""


class EngineTransport(Transport):
    """Runs `service.engine.Engine.classify_batch` in this process: one batched generate per batch."""

    name = "in-process"

    def __init__(self, engine) -> None:  # noqa: ANN001 - service.engine.Engine, imported lazily by callers
        self.engine = engine

    def classify(self, images: Sequence[Image.Image], params: Sequence[ClassifyParams]) -> BatchOutput:
        started = time.perf_counter()
        try:
            results: list[ClassifyResult | Exception] = list(self.engine.classify_batch(list(images), list(params)))
        except Exception as error:  # noqa: BLE001 - one failed batch becomes error rows, the run goes on
            logger.warning("batch of %d images failed in-process: %s", len(images), error)
            results = [error] * len(images)
        return results, (time.perf_counter() - started) * 1000

    def model_name(self) -> str:
        return self.engine.info().model_id


class _RemoteTransport(Transport):
    """Shared logic of HTTP and gRPC: one batch request when parameters agree, else concurrent requests."""

    def __init__(self, client, max_images_per_request: int = 32) -> None:  # noqa: ANN001 - HttpClient or GrpcClient
        self.client = client
        self.max_images_per_request = max_images_per_request
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def classify(self, images: Sequence[Image.Image], params: Sequence[ClassifyParams]) -> BatchOutput:
        payloads = [encode_image(image) for image in images]
        started = time.perf_counter()
        if all(item == params[0] for item in params):
            results = self._classify_shared(payloads, params[0])
        else:
            results = self._classify_each(payloads, params)
        return results, (time.perf_counter() - started) * 1000

    def _is_retryable(self, error: Exception) -> bool:
        """Return whether the service asked the client to come back later (overloaded or busy)."""
        return False

    def _with_retries(self, call, *args):  # noqa: ANN001, ANN202 - a client method and its arguments
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return call(*args)
            except Exception as error:
                if attempt == MAX_ATTEMPTS or not self._is_retryable(error):
                    raise
                logger.info("%s service busy (%s); retry %d of %d", self.name, error, attempt, MAX_ATTEMPTS - 1)
                time.sleep(RETRY_DELAY_S * attempt)
        raise AssertionError("unreachable")

    def _classify_shared(self, payloads: list[bytes], params: ClassifyParams) -> list[ClassifyResult | Exception]:
        results: list[ClassifyResult | Exception] = []
        for start in range(0, len(payloads), self.max_images_per_request):
            chunk = payloads[start : start + self.max_images_per_request]
            try:
                results.extend(self._with_retries(self.client.classify_batch, chunk, params))
            except Exception as error:  # noqa: BLE001 - recorded as error rows
                logger.warning("%s batch request of %d images failed: %s", self.name, len(chunk), error)
                results.extend([error] * len(chunk))
        return results

    def _classify_each(self, payloads: list[bytes], params: Sequence[ClassifyParams]) -> list[ClassifyResult | Exception]:
        # Per-image candidates (choice distractors) need one request per image; sending
        # them concurrently lets the service's adaptive batcher group them as a batch.
        if self._pool is None or self._pool_size < len(payloads):
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pool = ThreadPoolExecutor(max_workers=len(payloads), thread_name_prefix="eval-client")
            self._pool_size = len(payloads)

        def call(index: int) -> ClassifyResult | Exception:
            try:
                return self._with_retries(self.client.classify, payloads[index], params[index])
            except Exception as error:  # noqa: BLE001 - recorded as an error row
                logger.warning("%s request failed: %s", self.name, error)
                return error

        return list(self._pool.map(call, range(len(payloads))))

    def model_name(self) -> str:
        return f"{self.name} service"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


class HttpTransport(_RemoteTransport):
    name = "http"

    def _is_retryable(self, error: Exception) -> bool:
        from service.client import ClientError

        # 429: over the concurrency limit; 503: the batcher's queue is over its latency budget.
        return isinstance(error, ClientError) and error.status in (429, 503)

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 300.0) -> None:
        from service.client import HttpClient

        super().__init__(HttpClient(base_url, api_key=api_key, timeout=timeout))


class GrpcTransport(_RemoteTransport):
    name = "grpc"

    def __init__(self, target: str, api_key: str | None = None, timeout: float = 300.0) -> None:
        from service.grpc.client import GrpcClient

        super().__init__(GrpcClient(target, api_key=api_key, timeout=timeout))
