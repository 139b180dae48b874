"""Decode and check uploaded images before they join a batch.

Everything a client can send goes through `decode_image`, so a bad upload fails
its own request with a clear reason and never reaches the model batch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats the service accepts. Pillow can open more (EPS, PSD, ...), but each
# extra decoder is attack surface with no use for photo classification.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})


class ImageError(ValueError):
    """Raised for an upload that is not an acceptable image; the message says why."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


def _sniff_non_image(data: bytes) -> str | None:
    head = data[:512].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "PDF documents are not supported; send a JPEG, PNG or WebP image"
    if head.startswith(b"<?xml") or head.startswith(b"<svg") or b"<svg" in head:
        return "SVG images are not supported; rasterize to PNG first"
    if head.startswith(b"<!doctype html") or head.startswith(b"<html"):
        return "the upload is an HTML document, not an image"
    return None


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode `data` into an RGB image, or raise ImageError naming the problem.

    Animated images (GIF, WebP, APNG) are accepted and their first frame is used.
    EXIF orientation is applied, and CMYK, 16-bit, palette, alpha and grayscale
    images are converted to 8-bit RGB (alpha composited on white).
    """
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"the image is {len(data)} bytes, above the limit of {limits.max_bytes} bytes")

    reason = _sniff_non_image(data)
    if reason is not None:
        raise ImageError(reason)

    # Pillow's own bomb check warns at half its limit and raises at twice it
    # inside Image.open. The service applies its configured, lower limit itself
    # from the header size, before any pixel is decoded.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as error:
            raise ImageError("the data is not a recognised image format (expected JPEG, PNG or WebP)") from error
        except Image.DecompressionBombError as error:
            # Pillow raises inside Image.open above twice its MAX_IMAGE_PIXELS
            # (about 179 megapixels by default), so the size comes from its message.
            raise ImageError(
                f"the image is above the limit of {limits.max_pixels} pixels (decompression bomb check: {error})"
            ) from error
        except (OSError, SyntaxError, ValueError) as error:
            # Some decoders parse more than the header in open(): a truncated
            # WebP fails here with "could not create decoder object".
            raise ImageError(f"the image is truncated or corrupt: {error}") from error

        if image.format not in ACCEPTED_FORMATS:
            raise ImageError(f"image format {image.format} is not supported; send JPEG, PNG or WebP")

        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"the image has an invalid size {width}x{height}")
        if width * height > limits.max_pixels:
            raise ImageError(
                f"the image is {width}x{height} = {width * height} pixels, above the limit of {limits.max_pixels} pixels"
            )

        try:
            image.seek(0)
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise ImageError(f"the {image.format} image is truncated or corrupt: {error}") from error

    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    # In place, so an upload without a rotation tag is not copied.
    ImageOps.exif_transpose(image, in_place=True)

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit integer grayscale: scale to 8 bits instead of clipping.
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background

    return image.convert("RGB")
