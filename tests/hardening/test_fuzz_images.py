"""Property-based tests: any upload decodes to an RGB image or raises ImageError, nothing else.

Any other exception would escape the request path as a 500, so this fuzzes
`decode_image` with random bytes and with valid images of every accepted
format that are truncated or have bytes overwritten.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.images import ImageError, ImageLimits, decode_image
from tests.hardening.crafted import accepted_images

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000)
SEEDS = accepted_images()

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_decodes_or_rejects(data: bytes) -> None:
    try:
        image = decode_image(data, LIMITS)
    except ImageError as error:
        assert str(error), "an ImageError carries a message for the client"
        return
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.width * image.height <= LIMITS.max_pixels


@FUZZ
@given(data=st.binary(max_size=4096))
def test_decode_random_bytes(data: bytes) -> None:
    assert_decodes_or_rejects(data)


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), cut=st.floats(min_value=0.0, max_value=1.0))
def test_decode_truncated_images(name: str, cut: float) -> None:
    data = SEEDS[name]
    assert_decodes_or_rejects(data[: int(len(data) * cut)])


@FUZZ
@given(
    name=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.floats(min_value=0.0, max_value=1.0), st.integers(0, 255)), min_size=1, max_size=16),
)
def test_decode_overwritten_bytes(name: str, edits: list[tuple[float, int]]) -> None:
    data = bytearray(SEEDS[name])
    for position, value in edits:
        data[min(int(position * len(data)), len(data) - 1)] = value
    assert_decodes_or_rejects(bytes(data))
