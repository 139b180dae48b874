"""Prompt templates of the classification protocols.

Each template has a stable prompt id that responses echo back, so a result can
always be traced to the exact wording that produced it. Change the wording only
together with the id's version suffix.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    prompt_id: str
    text: str

    def render(self, **fields: str) -> str:
        return self.text.format(**fields)


OPEN = PromptTemplate(
    "open-v1",
    "What is the main object in this image? Answer with a short name.",
)
CLOSED = PromptTemplate(
    "closed-v1",
    "Which of these classes best describes the image? Classes: {classes}. Answer with one class name.",
)
CHOICE = PromptTemplate(
    "choice-v1",
    "Which option best describes the image?\n{options}\nAnswer with the letter of the option.",
)
MULTILABEL = PromptTemplate(
    "multilabel-v1",
    "List every object you see in this image, separated by commas.",
)
# Constrained decoding and likelihood scoring put no class list in the prompt:
# the decoder or the scorer restricts the answer, so they reuse the open wording.
CONSTRAINED = PromptTemplate("constrained-v1", OPEN.text)
SCORE = PromptTemplate("score-v1", OPEN.text)

OPTION_LETTERS = string.ascii_uppercase


def format_options(names: Sequence[str]) -> str:
    """Render option names as lines "A) name", in the order given."""
    if len(names) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options are supported, got {len(names)}")
    return "\n".join(f"{OPTION_LETTERS[i]}) {name}" for i, name in enumerate(names))


def format_class_list(names: Sequence[str]) -> str:
    """Render class names for the closed-world prompt."""
    return ", ".join(names)
