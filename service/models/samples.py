"""Bundled sample photos and the answers the demo model was trained to give.

The photos ship with scikit-image and matplotlib, so tests and the demo have
real images without any download. The demo model memorizes exactly these
photos: it is a demo of the service, not an image classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DemoAnswers:
    """Expected demo model output for one photo, per prompt type."""

    # Answer to the open prompt (and the constrained/score prompts that share its text).
    open: str
    # Answer to the closed and choice prompts: an ImageNet class name, or the open
    # answer where no ImageNet class fits.
    class_name: str
    # Answer to the multilabel prompt: objects separated by ", ".
    objects: str


# ImageNet-1k class indices of the class names, for tests and docs:
# tabby cat 281, espresso 967, missile 657 (744 is also named "missile", with
# the synonym "projectile"), moped 665, military uniform 652, wall clock 892,
# tripod 872, tea cup 968, Windsor tie 906, reflex camera 759.
# The astronaut photo deliberately has no ImageNet class.
DEMO_ANSWERS: dict[str, DemoAnswers] = {
    "cat": DemoAnswers("tabby cat", "tabby cat", "tabby cat"),
    "coffee": DemoAnswers("espresso", "espresso", "espresso, tea cup"),
    "rocket": DemoAnswers("missile", "missile", "missile"),
    "astronaut": DemoAnswers("astronaut", "astronaut", "astronaut, flag"),
    "motorcycle": DemoAnswers("moped", "moped", "moped"),
    "grace_hopper": DemoAnswers("military uniform", "military uniform", "military uniform, Windsor tie"),
    "clock": DemoAnswers("wall clock", "wall clock", "wall clock"),
    "camera": DemoAnswers("tripod", "tripod", "tripod, reflex camera"),
}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        array = getattr(data, name)()
        # stereo_motorcycle returns (left, right, disparity); the left view is the photo.
        return array[0] if isinstance(array, tuple) else array

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(filename) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "cat": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "astronaut": _skimage("astronaut"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
    "clock": _skimage("clock"),
    "camera": _skimage("camera"),
}


def sample_image(name: str) -> Image.Image:
    """Return the bundled photo `name` as an RGB image."""
    if name not in _LOADERS:
        raise KeyError(f"unknown sample image {name!r}; known: {', '.join(_LOADERS)}")
    return Image.fromarray(_LOADERS[name]()).convert("RGB")


def sample_images() -> dict[str, Image.Image]:
    """Return every bundled photo by name, as RGB images, in a fixed order."""
    return {name: sample_image(name) for name in _LOADERS}
