"""Crafted uploads for the bad-input suite: broken, hostile and unusual but valid images.

Everything is built in memory from Pillow and zlib, so the suite needs no
fixture files.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small RGB test pattern with some structure, so encoders keep real data."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((200, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A 1-bit grayscale PNG of width x height black pixels: about 50 KB that decode to hundreds of megapixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = bytearray()
    rows_per_chunk = 512
    for start in range(0, height, rows_per_chunk):
        body += compressor.compress(row * min(rows_per_chunk, height - start))
    body += compressor.flush()

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", bytes(body)) + _png_chunk(b"IEND", b"")


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def corrupted(data: bytes) -> bytes:
    """Overwrite the middle third with 0xFF bytes, keeping header and length."""
    third = len(data) // 3
    return data[:third] + b"\xff" * third + data[2 * third :]


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    return encode(photo((60, 20)), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (40, 30), 40000), "PNG")


def palette_png_with_transparency() -> bytes:
    image = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


# Name -> bytes of uploads the service must accept and normalize to RGB.
def accepted_images() -> dict[str, bytes]:
    base = photo()
    return {
        "jpeg": encode(base, "JPEG"),
        "cmyk-jpeg": encode(base.convert("CMYK"), "JPEG"),
        "grayscale-jpeg": encode(base.convert("L"), "JPEG"),
        "exif-rotated-jpeg": exif_rotated_jpeg(),
        "rgba-png": encode(base.convert("RGBA"), "PNG"),
        "grayscale-alpha-png": encode(base.convert("LA"), "PNG"),
        "palette-png": palette_png_with_transparency(),
        "16-bit-png": sixteen_bit_png(),
        "1-bit-bmp": encode(base.convert("1"), "BMP"),
        "tiff": encode(base, "TIFF"),
        "webp": encode(base, "WEBP"),
        "animated-gif": animated("GIF"),
        "animated-webp": animated("WEBP"),
        "animated-png": animated("PNG"),
    }


# (name, bytes, regex the error message must match) of uploads the service must reject.
def rejected_images(max_pixels: int) -> list[tuple[str, bytes, str]]:
    base = photo((256, 192))
    jpeg = encode(base, "JPEG")
    png = encode(base, "PNG")
    webp = encode(base, "WEBP")
    side = int(max_pixels**0.5) + 64
    return [
        ("empty", b"", "empty"),
        ("truncated-jpeg", truncated(jpeg), "truncated or corrupt"),
        ("truncated-png", truncated(png), "truncated or corrupt"),
        ("truncated-webp", truncated(webp), "truncated or corrupt|not a recognised image"),
        ("corrupt-jpeg-header", b"\xff\xd8\xff\xe0" + b"\x00" * 200, "truncated or corrupt|not a recognised image"),
        ("corrupt-png-data", corrupted(png), "truncated or corrupt"),
        ("decompression-bomb-png", png_bomb(), "decompression bomb|above the limit of .* pixels"),
        ("over-pixel-limit-png", encode(Image.new("1", (side, side)), "PNG"), f"above the limit of {max_pixels} pixels"),
        ("text-as-image", b"this is plain text, not a picture", "not a recognised image format"),
        ("png-signature-only", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a recognised image format"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', "SVG"),
        ("svg-with-xml-prolog", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        ("pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "PDF"),
        ("html", b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
        ("ico-format", encode(photo((32, 32)), "ICO"), "image format ICO is not supported"),
    ]
