"""Request payloads for load tests: real photos from scikit-image, encoded as JPEG.

The images are bundled with scikit-image (`skimage.data`), so load tests need no
download and no files outside the repository.
"""

from __future__ import annotations

import io
from functools import lru_cache

# Names of skimage.data loaders; the demo model is trained to return "tabby cat", "espresso" and "missile" for them.
SAMPLE_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "rocket")


def _encode_jpeg(pixels, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def sample_jpegs() -> tuple[tuple[str, bytes], ...]:
    """Return (file name, JPEG bytes) for each photo in SAMPLE_PHOTOS."""
    from skimage import data

    return tuple((f"{name}.jpg", _encode_jpeg(getattr(data, name)())) for name in SAMPLE_PHOTOS)
