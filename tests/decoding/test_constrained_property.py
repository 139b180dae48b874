"""Property: whatever the weights, constrained answers are exactly taxonomy names or synonyms.

The tiny models are re-initialised with random weights drawn per example
(seed and scale), so the unconstrained model would answer arbitrary text.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.backends.constrained import (
    cached_trie,
    constrained_generate,
    eos_token_ids,
    generate_ranked,
    resolve_choices,
    spelling_variants,
)
from service.protocols import prompts
from service.protocols.base import PromptRequest
from service.protocols.decoding_runs import build_choice_set, taxonomy_choice_set

from .conftest import load_backend

FIVE_CLASSES = ["n02123045", "n07920052", "n03773504", "n02012849", "n03126707"]  # tabby cat, espresso, missile, crane bird, construction crane


@pytest.fixture(scope="module", params=["tiny-llava", "tiny-idefics3"])
def backend(request, models_dir):
    return load_backend(models_dir / request.param)


def randomize_weights(model, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def random_image(seed: int):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (40, 56, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.02, 0.3, 2.0]), top_k=st.integers(1, 4))
def test_constrained_answers_are_names(backend, imagenet, photos, seed, scale, top_k):
    randomize_weights(backend.model, seed, scale)
    whole = taxonomy_choice_set(imagenet)
    subset = build_choice_set(imagenet, FIVE_CLASSES)
    images = [photos["cat"], random_image(seed), photos["rocket"], random_image(seed + 1)]
    choice_sets = [whole, subset, subset, whole]

    eos_ids = eos_token_ids(backend.model, backend.tokenizer)
    tries = []
    for choice_set in choice_sets:
        tries.append(cached_trie(backend.tokenizer, resolve_choices(choice_set.request_choices), eos_ids))
    ranked, _, _ = generate_ranked(backend, images, [prompts.CONSTRAINED.text] * len(images), tries, num_beams=2 * top_k)

    for item, (choice_set, found) in enumerate(zip(choice_sets, ranked, strict=True)):
        assert found, f"item {item}: no beam finished on a name"
        for choice in found:
            name = choice_set.choices[choice.choice_index]
            decoded = backend.tokenizer.decode(list(choice.token_ids), skip_special_tokens=True)
            assert name in choice_set.class_ids, f"item {item}: {name!r} is not a class name"
            assert decoded in spelling_variants(name), f"item {item}: generated {decoded!r} does not spell {name!r}"
            assert choice.token_ids[-1] in eos_ids


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), top_k=st.integers(1, 5))
def test_model_answers_list_distinct_names(backend, imagenet, photos, seed, top_k):
    randomize_weights(backend.model, seed, 1.0)
    whole = taxonomy_choice_set(imagenet)
    subset = build_choice_set(imagenet, FIVE_CLASSES)
    requests = [
        PromptRequest(prompts.CONSTRAINED.text, "constrained-v1", "constrained", whole.request_choices, top_k),
        PromptRequest(prompts.CONSTRAINED.text, "constrained-v1", "constrained", subset.request_choices, top_k),
    ]

    answers, _ = constrained_generate(backend, [photos["coffee"], photos["cat"]], requests)

    for answer, choice_set in zip(answers, (whole, subset), strict=True):
        lines = answer.text.split("\n")
        assert 1 <= len(lines) <= top_k
        assert len(set(lines)) == len(lines)
        assert all(line in choice_set.class_ids for line in lines), lines
        assert answer.choice_scores == sorted(answer.choice_scores, reverse=True)
        assert all(score <= 0.0 for score in answer.choice_scores)
