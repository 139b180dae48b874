"""Likelihood scoring on the tiny random-weight models: prefix reuse changes the work, not the scores."""

from __future__ import annotations

import math

import pytest
import torch

from service.backends.base import BackendError
from service.backends.scoring import score_batch, score_choices
from service.protocols import prompts
from service.protocols.base import PromptRequest

from .conftest import load_backend

CHOICES = [
    ["tabby cat", "tabby", "espresso", "crane", "crane bird"],
    ["missile", "projectile"],
    ["Granny Smith", "tabby cat", "espresso"],
]


@pytest.fixture(scope="module", params=["tiny-llava", "tiny-idefics3"])
def backend(request, models_dir):
    return load_backend(models_dir / request.param)


def test_prefix_reuse_matches_full_rows(backend, photos):
    images = [photos["cat"], photos["rocket"], photos["coffee"]]
    texts = [prompts.SCORE.text] * 3

    reused = score_batch(backend, images, texts, CHOICES, reuse_prefix=True)
    full = score_batch(backend, images, texts, CHOICES, reuse_prefix=False)

    for item, (with_reuse, without) in enumerate(zip(reused.mean_log_probs, full.mean_log_probs, strict=True)):
        assert with_reuse == pytest.approx(without, abs=1e-4), f"item {item}"
    assert reused.prefilled_tokens < full.prefilled_tokens


def test_prefilled_token_counts(backend, photos):
    images = [photos["cat"], photos["rocket"]]
    choices = CHOICES[:2]
    candidate_tokens = sum(len(backend.tokenizer(text, add_special_tokens=False)["input_ids"]) for row in choices for text in row)

    reused = score_batch(backend, images, [prompts.SCORE.text] * 2, choices, reuse_prefix=True)
    full = score_batch(backend, images, [prompts.SCORE.text] * 2, choices, reuse_prefix=False)

    assert reused.prefilled_tokens == sum(reused.prompt_tokens) + candidate_tokens
    rows_per_item = [len(row) for row in choices]
    assert full.prefilled_tokens == sum(p * n for p, n in zip(reused.prompt_tokens, rows_per_item)) + candidate_tokens


def test_batch_scores_equal_single_item_scores(backend, photos):
    images = [photos["cat"], photos["rocket"], photos["coffee"]]
    batched = score_batch(backend, images, [prompts.SCORE.text] * 3, CHOICES)

    for item, image in enumerate(images):
        alone = score_batch(backend, [image], [prompts.SCORE.text], [CHOICES[item]])
        assert alone.mean_log_probs[0] == pytest.approx(batched.mean_log_probs[item], abs=1e-4), f"item {item}"


def test_scores_are_mean_token_log_probs(backend, photos):
    scored = score_batch(backend, [photos["cat"]], [prompts.SCORE.text], [CHOICES[0]])

    for text, mean, total in zip(CHOICES[0], scored.mean_log_probs[0], scored.total_log_probs[0], strict=True):
        length = len(backend.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        assert mean == pytest.approx(total / length), text
        assert total < 0.0
    # "crane" must end where "crane bird" continues, so their scores differ.
    assert scored.mean_log_probs[0][3] != scored.mean_log_probs[0][4]


def test_score_equals_plain_forward_pass(backend, photos):
    # The sum for one candidate equals the log-probabilities of a plain forward
    # pass over prompt + candidate + end of sequence, with no cache at all.
    text = "espresso"
    scored = score_batch(backend, [photos["coffee"]], [prompts.SCORE.text], [[text]])
    inputs = backend.build_inputs([photos["coffee"]], [prompts.SCORE.text])
    answer = backend.tokenizer(text, add_special_tokens=False)["input_ids"] + [backend.tokenizer.eos_token_id]
    prompt_length = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])

    with torch.inference_mode():
        logits = backend.model(**inputs).logits[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = sum(float(log_probs[prompt_length - 1 + j, token]) for j, token in enumerate(answer))

    assert scored.total_log_probs[0][0] == pytest.approx(expected, abs=1e-4)


def test_score_choices_answers(backend, photos):
    requests = [PromptRequest(prompts.SCORE.text, "score-v1", "score", tuple(choices)) for choices in CHOICES]

    answers, _ = score_choices(backend, [photos["cat"], photos["rocket"], photos["coffee"]], requests)

    for answer, choices in zip(answers, CHOICES, strict=True):
        assert len(answer.choice_scores) == len(choices)
        assert answer.text == choices[max(range(len(choices)), key=lambda i: answer.choice_scores[i])]
        assert all(math.isfinite(score) for score in answer.choice_scores)
        assert answer.prompt_tokens > 0


def test_empty_choice_rejected(backend, photos):
    with pytest.raises(BackendError, match="no tokens"):
        score_batch(backend, [photos["cat"]], [prompts.SCORE.text], [["tabby cat", ""]])
