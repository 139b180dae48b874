"""The contract every MLLM backend implements.

A backend turns a batch of (image, prompt) pairs into text answers. Batching
policy, prompts and answer mapping live elsewhere, so a backend stays a thin
wrapper around one model: `load` once, `generate` many times, `info` for
responses and metric labels.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class BackendInfo:
    """What a backend serves, reported in responses and metric labels."""

    backend: str
    model_id: str
    device: str = "cpu"
    dtype: str = "float32"
    # Context window in tokens, or None where the backend cannot tell.
    max_context_tokens: int | None = None


@dataclass
class Generation:
    """One generated answer with its token counts."""

    text: str
    prompt_tokens: int = 0
    generated_tokens: int = 0
    # Optional per-class scores for backends that rank classes directly
    # (the supervised baseline); maps class id to probability.
    class_scores: dict[str, float] | None = None


@dataclass
class BatchTimings:
    """Wall time of one batch, split into stages, in seconds."""

    preprocess_s: float = 0.0
    generate_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class BackendError(RuntimeError):
    """Raised when a backend fails to load or to run a batch."""


class Backend(abc.ABC):
    """A model that answers prompts about images, one batch at a time."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights and processor. Raise BackendError with a fix on failure."""

    @abc.abstractmethod
    def generate(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
    ) -> tuple[list[Generation], BatchTimings]:
        """Answer prompts[i] about images[i]; both sequences have the same length."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Describe the loaded model."""

    def prepare_image(self, image: Image.Image) -> Image.Image:
        """Return `image` ready to join a batch; called per image, outside the batch, in the request's thread.

        Backends move per-image work here (such as resizing to the model's
        input size) so that it runs in parallel instead of inside the batch.
        """
        return image

    def count_tokens(self, text: str) -> int:
        """Estimate the prompt tokens of `text`; backends with a tokenizer override this."""
        # Roughly 4 characters a token for English text.
        return max(1, len(text) // 4)
