"""Typed HTTP client for the classification service."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Sequence
from pathlib import Path

import httpx

from service.schemas import ClassifyParams, ClassifyResult, TaxonomyInfo

ImageInput = bytes | str | Path


class ClientError(RuntimeError):
    """Raised for a non-2xx response; carries the status and the JSON error body."""

    def __init__(self, status: int, body: dict | str) -> None:
        message = body.get("error", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


def _image_part(image: ImageInput, name: str) -> tuple[str, bytes, str]:
    if isinstance(image, bytes):
        return (f"{name}.bin", image, "application/octet-stream")
    path = Path(image)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return (path.name, path.read_bytes(), content_type)


def _form_fields(params: ClassifyParams | None) -> dict[str, str]:
    params = params or ClassifyParams()
    fields = {
        "protocol": params.protocol,
        "top_k": str(params.top_k),
        "seed": str(params.seed),
        "num_options": str(params.num_options),
    }
    if params.taxonomy is not None:
        fields["taxonomy"] = params.taxonomy
    if params.candidates is not None:
        fields["candidates"] = json.dumps(params.candidates)
    if params.max_new_tokens is not None:
        fields["max_new_tokens"] = str(params.max_new_tokens)
    return fields


class HttpClient:
    """Blocking client; one connection pool per instance, so reuse it."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def classify(self, image: ImageInput, params: ClassifyParams | None = None) -> ClassifyResult:
        response = self._client.post(
            "/classify", data=_form_fields(params), files={"image": _image_part(image, "image")}
        )
        return ClassifyResult.model_validate(self._json(response))

    def classify_batch(self, images: Sequence[ImageInput], params: ClassifyParams | None = None) -> list[ClassifyResult]:
        files = [("images", _image_part(image, f"image{i}")) for i, image in enumerate(images)]
        response = self._client.post("/classify_batch", data=_form_fields(params), files=files)
        return [ClassifyResult.model_validate(item) for item in self._json(response)["results"]]

    def taxonomies(self) -> list[TaxonomyInfo]:
        response = self._client.get("/taxonomies")
        return [TaxonomyInfo.model_validate(item) for item in self._json(response)["taxonomies"]]

    def metrics_text(self) -> str:
        response = self._client.get("/metrics")
        if response.status_code != 200:
            raise ClientError(response.status_code, response.text)
        return response.text

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ClientError(response.status_code, body)
        return body
