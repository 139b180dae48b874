"""Image decoding and checks, on images built in memory."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from service.images import ImageError, ImageLimits, decode_image

LIMITS = ImageLimits(max_bytes=5_000_000, max_pixels=4_000_000)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.7\n1 0 obj", "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"<?xml version='1.0'?><svg></svg>", "SVG"),
        (b"hello, this is text", "not a recognised image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not a recognised image"),
    ],
)
def test_decode_rejects_non_images(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data, LIMITS)


def test_decode_rejects_truncated_jpeg() -> None:
    data = _encode(Image.new("RGB", (256, 256), (200, 10, 10)), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_decode_rejects_too_many_pixels() -> None:
    data = _encode(Image.new("L", (3000, 2000)), "PNG")
    with pytest.raises(ImageError, match="above the limit of 4000000 pixels"):
        decode_image(data, LIMITS)


def test_decode_rejects_too_many_bytes() -> None:
    limits = ImageLimits(max_bytes=2048, max_pixels=4_000_000)
    data = _encode(Image.effect_noise((128, 128), 50).convert("RGB"), "PNG")
    with pytest.raises(ImageError, match="above the limit of 2048 bytes"):
        decode_image(data, limits)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_decode_normalizes_modes_to_rgb(mode: str) -> None:
    image = Image.new("RGB", (40, 30), (10, 120, 240)).convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 30000)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    decoded = decode_image(_encode(image, fmt), LIMITS)
    assert decoded.mode == "RGB"
    assert decoded.size == (40, 30)


def test_decode_composites_alpha_on_white() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded = decode_image(_encode(image, "PNG"), LIMITS)
    assert decoded.getpixel((0, 0)) == (255, 255, 255)


def test_decode_applies_exif_orientation() -> None:
    image = Image.new("RGB", (60, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(_encode(image, "JPEG", exif=exif), LIMITS)
    assert decoded.size == (20, 60)


def test_decode_uses_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(buffer.getvalue(), LIMITS)
    red, green, blue = decoded.getpixel((4, 4))
    assert red > 200
    assert blue < 50


def test_decode_accepts_webp() -> None:
    decoded = decode_image(_encode(Image.new("RGB", (32, 32), (1, 2, 3)), "WEBP"), LIMITS)
    assert decoded.size == (32, 32)
