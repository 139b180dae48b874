"""Backend for a remote OpenAI-compatible chat completions server.

Each (image, prompt) pair becomes one chat completion request with the image
as a base64 data URL; a batch is sent as concurrent requests from a bounded
thread pool. Servers such as vLLM, llama.cpp or TGI expose this API.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from service.backends.base import Backend, BackendError, BackendInfo, BatchTimings, Generation
from service.backends.transformers_backend import resize_to_max_side

logger = logging.getLogger(__name__)

# JPEG at quality 90 is 4-9x smaller than PNG for the bundled photos
# (coffee, 600x400: 70 kB against 438 kB), and every request carries one.
_JPEG_QUALITY = 90
_ERROR_BODY_CHARS = 300


def image_data_url(image: Image.Image, max_side: int) -> str:
    """Encode `image` as a JPEG data URL, downscaled to at most `max_side` pixels."""
    buffer = io.BytesIO()
    resize_to_max_side(image, max_side).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIBackend(Backend):
    """Backend that sends each (image, prompt) pair to a remote `/chat/completions` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_new_tokens: int = 24,
        max_image_side: int = 1024,
        max_concurrency: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_new_tokens = max_new_tokens
        self.max_image_side = max_image_side
        self.max_concurrency = max_concurrency
        self._client: Any = None

    def load(self) -> None:
        """Open the HTTP client and check that the server responds to `GET /models`."""
        import httpx

        headers = {}
        api_key = os.environ.get(self.api_key_env, "")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        client = httpx.Client(
            timeout=self.timeout_s,
            headers=headers,
            limits=httpx.Limits(max_connections=self.max_concurrency),
        )

        url = f"{self.base_url}/models"
        try:
            response = client.get(url)
        except httpx.RequestError as error:
            client.close()
            raise BackendError(
                f"cannot reach OpenAI-compatible server at {self.base_url} for model {self.model!r}: {error}. "
                "Check openai_base_url and that the server is running."
            ) from error

        if response.status_code in (401, 403):
            client.close()
            raise BackendError(
                f"OpenAI-compatible server at {self.base_url} rejected the API key (HTTP {response.status_code}); "
                f"set a valid key in the environment variable {self.api_key_env}"
            )
        # Some servers implement chat completions without the model list, so
        # any other status still counts as reachable.
        if response.status_code != 200:
            logger.warning("GET %s returned HTTP %d; continuing without a model check", url, response.status_code)

        self._client = client
        logger.info("using OpenAI-compatible server %s with model %s", self.base_url, self.model)

    def _request_body(self, data_url: str, prompt: str, max_new_tokens: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": max_new_tokens,
            # Greedy decoding, as the transformers backend does.
            "temperature": 0,
        }

    def _complete(self, body: dict[str, Any]) -> Generation:
        import httpx

        url = f"{self.base_url}/chat/completions"
        try:
            response = self._client.post(url, json=body)
        except httpx.TimeoutException as error:
            raise BackendError(f"request to {url} timed out after {self.timeout_s} s") from error
        except httpx.RequestError as error:
            raise BackendError(f"request to {url} failed: {error}") from error

        if response.status_code != 200:
            raise BackendError(
                f"{url} returned HTTP {response.status_code} for model {self.model!r}: "
                f"{response.text[:_ERROR_BODY_CHARS]}"
            )

        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"] or ""
            usage = payload.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise BackendError(
                f"invalid chat completion from {url}: {response.text[:_ERROR_BODY_CHARS]!r} ({error!r})"
            ) from error

        return Generation(
            text=text.strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            generated_tokens=int(usage.get("completion_tokens", 0)),
        )

    def generate(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
    ) -> tuple[list[Generation], BatchTimings]:
        """Send one request per (image, prompt) pair, at most `max_concurrency` at a time."""
        if self._client is None:
            raise BackendError(f"OpenAI backend for model {self.model!r} is not loaded; call load() first")
        if len(images) != len(prompts):
            raise BackendError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        if not images:
            raise BackendError("got an empty batch; pass at least one image")

        started = time.perf_counter()
        tokens = max_new_tokens or self.max_new_tokens
        bodies = [
            self._request_body(image_data_url(image, self.max_image_side), prompt, tokens)
            for image, prompt in zip(images, prompts, strict=True)
        ]
        preprocess_s = time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(len(bodies), self.max_concurrency)) as pool:
            # map re-raises the first failed request's BackendError after all finish.
            generations = list(pool.map(self._complete, bodies))
        generate_s = time.perf_counter() - started
        return generations, BatchTimings(preprocess_s=preprocess_s, generate_s=generate_s)

    def info(self) -> BackendInfo:
        """Describe the remote model; its device and context window are unknown here."""
        return BackendInfo(backend="openai", model_id=self.model, device="remote", dtype="unknown")

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None
