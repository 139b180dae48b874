"""Pre-resizing images to a processor's input size gives the processor's own pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessor

from service.backends.image_sizing import PreResizer, target_size_rule
from service.models.samples import sample_images


def clip_processor(edge: int) -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": edge}, crop_size={"height": edge, "width": edge})


def pixels(processor, image: Image.Image) -> np.ndarray:
    return processor(images=[image], return_tensors="np")["pixel_values"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [((451, 300), (48, 32)), ((300, 451), (32, 48)), ((512, 512), (32, 32)), ((741, 500), (47, 32))],
)
def test_shortest_edge_rule_truncates(size: tuple[int, int], expected: tuple[int, int]) -> None:
    rule = target_size_rule(clip_processor(32))

    assert rule is not None
    assert rule(size) == expected


@pytest.mark.parametrize("edge", [32, 224])
def test_pre_resized_pixels_match_processor(edge: int) -> None:
    processor = clip_processor(edge)
    resizer = PreResizer(processor, "test-model")

    assert resizer.enabled
    for name, image in sample_images().items():
        prepared = resizer(image)
        assert min(prepared.size) == edge, name
        assert np.array_equal(pixels(processor, prepared), pixels(processor, image)), name


def test_smaller_images_stay_unchanged() -> None:
    resizer = PreResizer(clip_processor(224), "test-model")
    image = Image.new("RGB", (100, 80), (10, 20, 30))

    assert resizer(image) is image


def test_tiling_processor_not_pre_resized() -> None:
    class LongestEdgeProcessor:
        do_resize = True
        resample = 1
        size = {"longest_edge": 364}

    resizer = PreResizer(LongestEdgeProcessor(), "test-model")
    image = Image.new("RGB", (1000, 700))

    assert not resizer.enabled
    assert resizer(image) is image


def test_mismatching_processor_turns_pre_resize_off() -> None:
    processor = clip_processor(32)
    real_call = processor.__class__.__call__

    class RoundingProcessor(processor.__class__):
        # Resizes to a size the rule does not reproduce, as a processor with
        # its own rounding would, so the load-time check must catch it.
        def __call__(self, images, **kwargs):
            images = [image.resize((image.width + 1, image.height)) for image in images]
            return real_call(self, images=images, **kwargs)

    resizer = PreResizer(RoundingProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), "test-model")

    assert not resizer.enabled


def test_resize_off_processor_not_pre_resized() -> None:
    processor = clip_processor(32)
    processor.do_resize = False

    assert target_size_rule(processor) is None
