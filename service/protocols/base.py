"""Protocol runs: the per-image state machine between prompts and mapped labels.

A protocol asks the model one or two prompts and turns the answers into a
`ClassifyResult`. The same run object is driven synchronously by the
in-process `Engine` and asynchronously by the BentoML service through its
batcher, so both paths build identical prompts and parse answers identically.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

from service.schemas import Label, Method, ObjectResult

# How the backend answers a prompt: free generation, generation restricted to
# the given choices, or a likelihood score per choice without generation.
GenerationMode = Literal["generate", "constrained", "score"]


@dataclass(frozen=True)
class PromptRequest:
    """One prompt for the model about the run's image."""

    text: str
    prompt_id: str
    mode: GenerationMode = "generate"
    # Choice strings for constrained decoding and scoring, in class order.
    choices: tuple[str, ...] = ()
    # Beams for constrained decoding; top-k distinct classes come back.
    num_beams: int = 1


@dataclass
class ModelAnswer:
    """What the backend returned for one PromptRequest."""

    text: str
    prompt_tokens: int = 0
    generated_tokens: int = 0
    # constrained/score modes: one score per choice, aligned with PromptRequest.choices.
    choice_scores: list[float] | None = None
    # supervised backends: class id -> probability.
    class_scores: dict[str, float] | None = None


@dataclass
class Outcome:
    """The mapped result of a finished run, before timings and ids are attached."""

    labels: list[Label]
    raw_answer: str
    method: Method
    margin: float
    similarity: float
    out_of_list: bool
    abstain: bool
    ambiguous: bool = False
    options: list[Label] | None = None
    first_answer: str | None = None
    objects: list[ObjectResult] | None = None


class ParameterError(ValueError):
    """Raised for a request parameter the service cannot honour; names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class RunStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    map_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class ProtocolRun(abc.ABC):
    """One image going through one protocol."""

    protocol: str
    prompt_id: str

    @abc.abstractmethod
    def first_prompt(self) -> PromptRequest:
        """Return the first prompt to send about the image."""

    @abc.abstractmethod
    def on_answer(self, answer: ModelAnswer) -> PromptRequest | Outcome:
        """Consume an answer; return the next prompt, or the final outcome."""
