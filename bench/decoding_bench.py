"""Benchmark of constrained decoding and likelihood scoring against their baselines.

Run with `mllm-classify bench decoding` (or `python -m bench.decoding_bench`).
All figures come from one run on the same images, with the compared methods
alternating round by round, so machine load affects both sides alike:

- `closed` with the full ImageNet-1k class list in the prompt versus
  `constrained` over the same classes (no list in the prompt): prompt tokens
  per image and time per image.
- `score` with 2, 5 and 20 candidates, with and without prefix (key/value
  cache) reuse: token positions run through the model per image and time per
  image.

The closed prompt with 1000 class names is about 6000 tokens, more than the
2048 positions of the offline models, so the benchmark builds a copy of the
`bench-llava` architecture with a longer context (random weights) into a
temporary directory. Random weights make the answers meaningless; only the
amount of work is compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Positions of the long-context benchmark model: the closed ImageNet-1k prompt
# (about 6000 tokens with the project tokenizer) plus image and answer.
LONG_CONTEXT_POSITIONS = 8192
SCORE_CANDIDATE_COUNTS = (2, 5, 20)


@dataclass
class Measurement:
    """Work and time of one method on the benchmark images."""

    name: str
    # Tokens per image in the prompt (image tokens included).
    prompt_tokens: float
    # Token positions run through the model per image, beams and candidate rows included.
    prefilled_tokens: float
    seconds: list[float]

    @property
    def seconds_per_image(self) -> float:
        return statistics.median(self.seconds)

    def line(self) -> str:
        return (
            f"{self.name:<40} prompt {self.prompt_tokens:>8,.0f} tok   prefilled {self.prefilled_tokens:>8,.0f} tok/image"
            f"   {self.seconds_per_image * 1000:>9,.1f} ms/image"
        )


def build_long_context_model(out_dir: Path, tokenizer_dir: Path) -> Path:
    """Write a random-weight copy of bench-llava with LONG_CONTEXT_POSITIONS positions; return its directory."""
    from transformers import AutoTokenizer

    from service.models.architectures import build_model
    from service.models.build import RECIPES, SEED

    spec = replace(RECIPES["bench-llava"].spec, max_positions=LONG_CONTEXT_POSITIONS)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model, processor = build_model(spec, tokenizer, SEED)
    path = out_dir / "bench-llava-long"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _time(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def _closed_round(backend: Any, images: Sequence[Any], prompt: str, max_new_tokens: int) -> tuple[float, list[int]]:
    seconds, (generations, _) = _time(lambda: backend.generate(images, [prompt] * len(images), max_new_tokens))
    return seconds, [generation.prompt_tokens for generation in generations]


def _constrained_round(backend: Any, images: Sequence[Any], requests: Sequence[Any]) -> tuple[float, list[int]]:
    from service.backends.constrained import constrained_generate

    seconds, (answers, _) = _time(lambda: constrained_generate(backend, images, requests))
    return seconds, [answer.prompt_tokens for answer in answers]


def compare_closed_and_constrained(
    backend: Any, taxonomy: Any, images: Sequence[Any], top_k: int, rounds: int, max_new_tokens: int
) -> tuple[Measurement, Measurement]:
    """Time `closed` with every class name in the prompt against `constrained` over the same names."""
    from service.backends.constrained import beams_for, cached_trie, eos_token_ids, resolve_choices
    from service.protocols import prompts
    from service.protocols.base import PromptRequest
    from service.protocols.decoding_runs import taxonomy_choice_set

    closed_prompt = prompts.CLOSED.render(classes=prompts.format_class_list([entry.name for entry in taxonomy.classes]))
    choice_set = taxonomy_choice_set(taxonomy)
    requests = [
        PromptRequest(prompts.CONSTRAINED.text, prompts.CONSTRAINED.prompt_id, "constrained", choice_set.request_choices, top_k)
        for _ in images
    ]
    # Build the trie before timing: it is cached for the life of the process.
    trie = cached_trie(backend.tokenizer, resolve_choices(choice_set.request_choices), eos_token_ids(backend.model, backend.tokenizer))
    beams = beams_for(top_k, trie)

    closed_times, constrained_times = [], []
    closed_tokens: list[int] = []
    constrained_tokens: list[int] = []
    for _ in range(rounds):
        seconds, closed_tokens = _closed_round(backend, images, closed_prompt, max_new_tokens)
        closed_times.append(seconds / len(images))
        seconds, constrained_tokens = _constrained_round(backend, images, requests)
        constrained_times.append(seconds / len(images))

    closed_mean = statistics.mean(closed_tokens)
    constrained_mean = statistics.mean(constrained_tokens)
    closed = Measurement("closed, ImageNet-1k list in prompt", closed_mean, closed_mean, closed_times)
    # Beam search expands the prompt to one row per beam before the prefill.
    constrained = Measurement(
        f"constrained, top-{top_k} ({beams} beams)", constrained_mean, constrained_mean * beams, constrained_times
    )
    return closed, constrained


def compare_prefix_reuse(
    backend: Any, taxonomy: Any, images: Sequence[Any], candidates: int, rounds: int
) -> tuple[Measurement, Measurement]:
    """Time `score` over the same candidates with and without prefix reuse."""
    from service.backends.scoring import score_batch
    from service.protocols import prompts

    # Every 50th class, so candidates have names of different lengths.
    names = [taxonomy.classes[(index * 50) % len(taxonomy)].name for index in range(candidates)]
    choices = [names] * len(images)
    texts = [prompts.SCORE.text] * len(images)

    reused_times, full_times = [], []
    reused = full = None
    for _ in range(rounds):
        seconds, reused = _time(lambda: score_batch(backend, images, texts, choices, reuse_prefix=True))
        reused_times.append(seconds / len(images))
        seconds, full = _time(lambda: score_batch(backend, images, texts, choices, reuse_prefix=False))
        full_times.append(seconds / len(images))

    assert reused is not None and full is not None
    prompt_tokens = statistics.mean(reused.prompt_tokens)
    return (
        Measurement(f"score, {candidates} candidates, prefix reuse", prompt_tokens, reused.prefilled_tokens / len(images), reused_times),
        Measurement(f"score, {candidates} candidates, no reuse", prompt_tokens, full.prefilled_tokens / len(images), full_times),
    )


def run(
    models_dir: Path,
    num_images: int = 4,
    rounds: int = 2,
    top_k: int = 5,
    max_new_tokens: int = 24,
    echo: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run every comparison and print one line per measurement and ratio; return the ratios."""
    import torch

    from mapping import load_taxonomy
    from service.backends.transformers_backend import TransformersBackend
    from service.models import build_models
    from service.models.samples import sample_images

    build_models(models_dir, only=["bench-llava"])
    photos = list(sample_images().values())
    images = [photos[index % len(photos)] for index in range(num_images)]
    taxonomy = load_taxonomy("imagenet-1k")
    ratios: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="decoding-bench-") as scratch:
        path = build_long_context_model(Path(scratch), models_dir / "bench-llava")
        backend = TransformersBackend(str(path), device="cpu", dtype="float32")
        backend.load()
        echo(
            f"model: bench-llava architecture, {LONG_CONTEXT_POSITIONS} positions, random weights; "
            f"{num_images} images per batch, median of {rounds} rounds; torch threads {torch.get_num_threads()}"
        )

        closed, constrained = compare_closed_and_constrained(backend, taxonomy, images, top_k, rounds, max_new_tokens)
        for measurement in (closed, constrained):
            echo(measurement.line())
        ratios["closed/constrained prompt tokens"] = closed.prompt_tokens / constrained.prompt_tokens
        ratios["closed/constrained prefilled tokens"] = closed.prefilled_tokens / constrained.prefilled_tokens
        ratios["closed/constrained time"] = closed.seconds_per_image / constrained.seconds_per_image

        for candidates in SCORE_CANDIDATE_COUNTS:
            reused, full = compare_prefix_reuse(backend, taxonomy, images, candidates, rounds)
            for measurement in (reused, full):
                echo(measurement.line())
            ratios[f"score {candidates}: no-reuse/reuse prefilled tokens"] = full.prefilled_tokens / reused.prefilled_tokens
            ratios[f"score {candidates}: no-reuse/reuse time"] = full.seconds_per_image / reused.seconds_per_image

    echo("ratios:")
    for name, value in ratios.items():
        echo(f"  {name:<48} {value:>8.2f}x")
    return ratios


if __name__ == "__main__":
    run(Path("models"))
