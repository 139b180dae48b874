"""Backend for Hugging Face image-text-to-text models, run in process with transformers.

Any model that `AutoProcessor` and `AutoModelForImageTextToText` load works:
a hub id (downloaded, or read from the Hugging Face cache with HF_HUB_OFFLINE=1)
or a local directory such as the models `mllm-classify build-models` writes.
Batches are left-padded and decoded greedily, so every answer in a batch equals
the answer to the same request run alone, up to float rounding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from service.backends.base import Backend, BackendError, BackendInfo, BatchTimings, Generation
from service.backends.image_sizing import PreResizer

if TYPE_CHECKING:
    from transformers import BatchFeature

logger = logging.getLogger(__name__)

_DTYPES = ("float32", "float16", "bfloat16")


def _load_hint(model_id: str) -> str:
    return (
        f"Pass a local model directory as the model id (MLLM_CLASSIFY_MODEL__MODEL_ID=/path/to/model), "
        f"or build the offline demo model with `mllm-classify build-models` and use models/demo-llava. "
        f"Hub ids such as {model_id!r} need network access, or a copy in the Hugging Face cache when HF_HUB_OFFLINE=1 is set."
    )


def resize_to_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """Return `image` as RGB, downscaled so that its longest side is at most `max_side` pixels."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    longest = max(image.size)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


class TransformersBackend(Backend):
    """Batched greedy generation with a transformers image-text-to-text model."""

    def __init__(
        self,
        model_id: str,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 24,
        torch_threads: int = 0,
        max_image_side: int = 1024,
    ) -> None:
        if dtype != "auto" and dtype not in _DTYPES:
            raise BackendError(f"invalid dtype {dtype!r}: expected auto or one of {', '.join(_DTYPES)}")
        self.model_id = model_id
        self.requested_device = device
        self.requested_dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.torch_threads = torch_threads
        self.max_image_side = max_image_side

        # Set by load(); other components (constrained decoding, likelihood
        # scoring) use them directly.
        self.model: Any = None
        self.processor: Any = None
        self.tokenizer: Any = None
        self.device: str = "cpu"
        self.dtype: Any = None
        self.pre_resizer: PreResizer | None = None

    def _resolve_device_and_dtype(self) -> None:
        import torch

        device = self.requested_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device

        dtype = self.requested_dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype)

    def load(self) -> None:
        """Load processor and model; raise BackendError naming the model id on failure."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        started = time.perf_counter()
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        self._resolve_device_and_dtype()

        local = Path(self.model_id).expanduser()
        looks_like_path = self.model_id.startswith((".", "/", "~")) or local.exists()
        if looks_like_path and not local.exists():
            raise BackendError(f"model directory {self.model_id!r} not found. {_load_hint(self.model_id)}")
        if looks_like_path and not local.is_dir():
            raise BackendError(f"model path {self.model_id!r} is a file, not a model directory. {_load_hint(self.model_id)}")
        source = str(local) if looks_like_path else self.model_id

        # transformers raises OSError for a missing or unreachable repository,
        # ValueError for a config it cannot map to a model class, and
        # ImportError when a processor needs an uninstalled package.
        try:
            processor = AutoProcessor.from_pretrained(source)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=self.dtype)
        except (OSError, ValueError, ImportError, KeyError) as error:
            reason = str(error).strip().rstrip(".")
            raise BackendError(f"cannot load model {self.model_id!r}: {reason}. {_load_hint(self.model_id)}") from error

        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise BackendError(f"model {self.model_id!r} has no tokenizer in its processor; it is not an image-text-to-text model")
        # Batched generation appends new tokens on the right, so prompts must be
        # padded on the left to end at the same position.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

        try:
            model = model.to(self.device)
        except (RuntimeError, AssertionError) as error:
            raise BackendError(f"cannot move model {self.model_id!r} to device {self.device!r}: {error}") from error
        model.eval()

        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        image_processor = getattr(processor, "image_processor", None)
        self.pre_resizer = PreResizer(image_processor, self.model_id) if image_processor is not None else None
        logger.info(
            "loaded model %s on %s (%s) in %.1f s",
            self.model_id,
            self.device,
            str(self.dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )

    def _require_loaded(self) -> None:
        if self.model is None:
            raise BackendError(f"model {self.model_id!r} is not loaded; call load() first")

    def _chat_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare_image(self, image: Image.Image) -> Image.Image:
        """Return `image` as RGB within max_image_side and, where the processor allows, at its input size."""
        image = resize_to_max_side(image, self.max_image_side)
        if self.pre_resizer is not None:
            image = self.pre_resizer(image)
        return image

    def build_inputs(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> BatchFeature:
        """Return the processor's left-padded BatchFeature for (image, prompt) pairs, on the model's device."""
        self._require_loaded()
        if len(images) != len(prompts):
            raise BackendError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        if not images:
            raise BackendError("got an empty batch; pass at least one image")

        texts = [self._chat_text(prompt) for prompt in prompts]
        # One list per sample: processors that accept several images per prompt
        # (Idefics3) need the nesting to pair each image with its prompt.
        nested = [[resize_to_max_side(image, self.max_image_side)] for image in images]
        try:
            inputs = self.processor(images=nested, text=texts, padding=True, return_tensors="pt")
        except (ValueError, TypeError, RuntimeError) as error:
            raise BackendError(f"preprocessing failed for model {self.model_id!r}: {error}") from error
        # Only floating tensors (pixel values) take the dtype; token ids stay integers.
        return inputs.to(self.device, dtype=self.dtype)

    def generate(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
    ) -> tuple[list[Generation], BatchTimings]:
        """Answer prompts[i] about images[i] with greedy decoding; return answers and stage timings."""
        import torch

        started = time.perf_counter()
        inputs = self.build_inputs(images, prompts)
        preprocess_s = time.perf_counter() - started

        started = time.perf_counter()
        try:
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
        except RuntimeError as error:
            raise BackendError(f"generation failed for model {self.model_id!r}: {error}") from error
        generate_s = time.perf_counter() - started

        prompt_length = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        generations = [
            Generation(
                text=self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
                prompt_tokens=int(prompt_tokens[row]),
                generated_tokens=self._count_generated(new_tokens),
            )
            for row, new_tokens in enumerate(output[:, prompt_length:].tolist())
        ]
        return generations, BatchTimings(preprocess_s=preprocess_s, generate_s=generate_s)

    def constrained_generate(self, images, requests, max_new_tokens=None):
        """Answer each request with its top choices by beam search restricted to its choice strings."""
        from service.backends.constrained import constrained_generate

        return constrained_generate(self, images, requests, max_new_tokens)

    def score_choices(self, images, requests, max_new_tokens=None):
        """Score each request's choice strings by length-normalized log-likelihood, sharing the prompt's cache."""
        from service.backends.scoring import score_choices

        return score_choices(self, images, requests, max_new_tokens)

    def _count_generated(self, new_tokens: list[int]) -> int:
        """Count tokens up to and including the first end-of-sequence token, without the padding after it."""
        eos_ids = self.model.generation_config.eos_token_id
        if eos_ids is None:
            eos_ids = [self.tokenizer.eos_token_id]
        elif isinstance(eos_ids, int):
            eos_ids = [eos_ids]
        for position, token in enumerate(new_tokens):
            if token in eos_ids:
                return position + 1
        return len(new_tokens)

    def count_tokens(self, text: str) -> int:
        """Count the tokens of `text` with the model's tokenizer, without special tokens."""
        self._require_loaded()
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def info(self) -> BackendInfo:
        """Describe the model; the context window comes from the text config."""
        max_context = None
        if self.model is not None:
            text_config = self.model.config.get_text_config()
            max_context = getattr(text_config, "max_position_embeddings", None)
        return BackendInfo(
            backend="transformers",
            model_id=self.model_id,
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch.") if self.dtype is not None else self.requested_dtype,
            max_context_tokens=max_context,
        )
