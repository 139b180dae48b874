"""Resize images to a model's input size before they join a batch.

A transformers image processor resizes every image inside the batch call,
which runs in the batcher's single thread. For a small model that resize
costs more than generation: py-spy on tiny-llava at 32 clients put 19% of the
worker's samples in the processor, 13% in `generate`. Resizing each image in
its request's own thread, to exactly the size the processor would resize it
to, leaves the processor a copy and moves the work off the batch.

Only processors whose resize is reproduced exactly are pre-resized: a fixed
`shortest_edge` (CLIP, LLaVA) or a fixed `height` and `width` (SigLIP). At load
the backend checks on a probe image that the processor's output is the same
with and without the pre-resize, and turns it off for the model if not.
Processors that tile or pick sizes per image (Idefics3, Qwen2-VL) are left as
they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

Size = tuple[int, int]


def _setting(processor: Any, name: str) -> Any:
    size = getattr(processor, "size", None)
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(name)
    return getattr(size, name, None)


def target_size_rule(image_processor: Any) -> Callable[[Size], Size] | None:
    """Return a function from an image's (width, height) to the size the processor resizes it to, or None."""
    if not getattr(image_processor, "do_resize", False) or getattr(image_processor, "resample", None) is None:
        return None

    shortest = _setting(image_processor, "shortest_edge")
    height = _setting(image_processor, "height")
    width = _setting(image_processor, "width")
    if shortest and not (height or width or _setting(image_processor, "longest_edge")):
        edge = int(shortest)

        # The same arithmetic as transformers' get_resize_output_image_size
        # with default_to_square=False: the long side is truncated, not rounded.
        def shortest_edge_size(size: Size) -> Size:
            image_width, image_height = size
            if image_width <= image_height:
                return edge, int(edge * image_height / image_width)
            return int(edge * image_width / image_height), edge

        return shortest_edge_size
    if height and width and not shortest:
        fixed = (int(width), int(height))
        return lambda size: fixed
    return None


def _probe_image(edge: int) -> Image.Image:
    # Larger than the input size on both sides, so the check runs a real
    # downscale. Noise at every scale makes a wrong size or filter show.
    generator = np.random.default_rng(7)
    width, height = 3 * edge + 7, 2 * edge + 5
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = generator.uniform(0, 64, size=(height, width, 3)).astype(np.float32)
    pixels = np.clip(ramp * 0.75 + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


class PreResizer:
    """A model's pre-resize step: shrink an image to the processor's input size, or leave it."""

    def __init__(self, image_processor: Any, model_id: str) -> None:
        self.rule = target_size_rule(image_processor)
        self.resample = getattr(image_processor, "resample", None)
        if self.rule is not None and not self._matches(image_processor):
            logger.info("model %s: pre-resizing changes the processor's output, so images are resized in the batch", model_id)
            self.rule = None
        logger.info("model %s: images are %s before batching", model_id, "pre-resized" if self.rule else "not pre-resized")

    @property
    def enabled(self) -> bool:
        return self.rule is not None

    def __call__(self, image: Image.Image) -> Image.Image:
        """Return `image` at the processor's input size where that shrinks it, else unchanged."""
        if self.rule is None:
            return image
        size = self.rule(image.size)
        # Only downscaling saves work in the batch; an upscale stays with the processor.
        if size == image.size or size[0] > image.width or size[1] > image.height:
            return image
        return image.resize(size, Image.Resampling(self.resample))

    def _matches(self, image_processor: Any) -> bool:
        edges = [_setting(image_processor, name) for name in ("shortest_edge", "height", "width")]
        probe = _probe_image(max(int(edge) for edge in edges if edge))
        try:
            direct = image_processor(images=[probe], return_tensors="np")["pixel_values"]
            resized = image_processor(images=[self(probe)], return_tensors="np")["pixel_values"]
        except Exception as error:  # noqa: BLE001 - any failure means: do not pre-resize
            logger.warning("pre-resize check failed (%s); images are resized in the batch", error)
            return False
        return direct.shape == resized.shape and bool(np.array_equal(direct, resized))
