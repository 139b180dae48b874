"""Fetch the image that a Label Studio task refers to.

A task's image field contains one of: a data URI, an http(s) URL, a path on the
Label Studio server such as /data/upload/3/cat.jpg (fetched from
`label_studio_url` with the access token), or a file name in the review folder.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import urljoin

import httpx

from service.assist.settings import AssistSettings


class TaskImageError(ValueError):
    """Raised when a task's image reference is invalid or its image cannot be read."""


def _read_data_uri(reference: str, limit: int) -> bytes:
    header, _, payload = reference.partition(",")
    if ";base64" not in header:
        raise TaskImageError("only base64 data URIs are supported for images")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise TaskImageError(f"invalid base64 in image data URI: {error}") from error
    if len(data) > limit:
        raise TaskImageError(f"image data URI decodes to {len(data)} bytes, above the limit of {limit}")
    return data


def resolve_local_image(images_dir: Path | None, name: str) -> Path:
    """Return the file `name` inside `images_dir`; raise TaskImageError outside it or when missing."""
    if images_dir is None:
        raise TaskImageError(f"image {name!r} is a file name, but no images folder is configured "
                             "(set MLLM_CLASSIFY_ASSIST__IMAGES_DIR)")
    root = images_dir.expanduser().resolve()
    path = (root / name).resolve()
    if root not in path.parents:
        raise TaskImageError(f"image name {name!r} points outside the images folder")
    if not path.is_file():
        raise TaskImageError(f"image {name!r} not found in {root}")
    return path


async def _fetch(url: str, headers: dict[str, str], settings: AssistSettings) -> bytes:
    limit = settings.max_image_bytes
    async with httpx.AsyncClient(timeout=settings.fetch_timeout_s, follow_redirects=True) as client:
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise TaskImageError(f"fetching image {url} failed with HTTP {response.status_code}")
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise TaskImageError(f"image {url} is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise TaskImageError(f"fetching image {url} failed: {error}") from error
    return b"".join(chunks)


async def load_task_image(reference: str, settings: AssistSettings) -> bytes:
    """Return the bytes of the image a task refers to; raise TaskImageError."""
    reference = reference.strip()
    if not reference:
        raise TaskImageError("the task's image field is empty")

    if reference.startswith("data:"):
        return _read_data_uri(reference, settings.max_image_bytes)

    token = settings.label_studio_api_key()
    if reference.startswith(("http://", "https://")):
        base = settings.label_studio_url.rstrip("/")
        # The access token goes only to the Label Studio server, never to other hosts.
        headers = {"Authorization": f"Token {token}"} if token and base and reference.startswith(base + "/") else {}
        return await _fetch(reference, headers, settings)

    if reference.startswith("/"):
        if not settings.label_studio_url:
            raise TaskImageError(
                f"image {reference!r} is a path on the Label Studio server; "
                "set MLLM_CLASSIFY_ASSIST__LABEL_STUDIO_URL to fetch it"
            )
        headers = {"Authorization": f"Token {token}"} if token else {}
        return await _fetch(urljoin(settings.label_studio_url.rstrip("/") + "/", reference.lstrip("/")), headers, settings)

    path = resolve_local_image(settings.images_dir, reference)
    data = path.read_bytes()
    if len(data) > settings.max_image_bytes:
        raise TaskImageError(f"image {reference!r} is {len(data)} bytes, above the limit of {settings.max_image_bytes}")
    return data
