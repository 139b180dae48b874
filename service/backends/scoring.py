"""Candidate likelihood scoring: how likely the model is to answer each choice.

The score of a choice is its length-normalized log-likelihood as the answer
to the image and prompt: the mean token log-probability of the choice's
tokens followed by end of sequence, as `tokenizer(choice,
add_special_tokens=False)` spells it. Including end of sequence lets "crane"
and "crane bird" differ, because the model must stop after "crane".

With prefix reuse (the default), the image and prompt of each batch item run
through the model once. Then all candidates of the item run in one row on top
of that key/value cache, side by side, with a block-diagonal attention mask
and position ids that restart after the prompt for each candidate, so no
candidate sees another and the cache is never copied. Without reuse, every
candidate gets a full row that repeats the whole image and prompt. The
benchmark compares both, and the tests check that they give the same scores.

The packed row needs a model that accepts a 4D attention mask; the LLaVA and
Idefics3 (Llama decoder) models of transformers 5.23 do, and the tests run
both.

A score answer (`ModelAnswer`) has `text` set to the best choice and
`choice_scores` set to the length-normalized log-likelihoods, aligned with
the request's choices. The protocol run turns them into probabilities.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from service.backends.base import BackendError, BatchTimings
from service.backends.constrained import eos_token_ids, resolve_choices

if TYPE_CHECKING:
    from service.protocols.base import ModelAnswer, PromptRequest

logger = logging.getLogger(__name__)


@dataclass
class ScoredBatch:
    """Log-likelihoods of one batch, per item and choice, with the work it took."""

    # mean_log_probs[i][j]: length-normalized log-likelihood of choice j of item i.
    mean_log_probs: list[list[float]]
    # Summed (not normalized) log-likelihoods, same layout.
    total_log_probs: list[list[float]]
    # Real (unpadded) prompt tokens of each item, image tokens included.
    prompt_tokens: list[int]
    # Token positions run through the model, padding excluded.
    prefilled_tokens: int
    timings: BatchTimings


def _accepts(model: Any, argument: str) -> bool:
    return argument in inspect.signature(model.forward).parameters


def _tokenize_choices(tokenizer: Any, choices_per_item: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    tokenized = []
    for choices in choices_per_item:
        encoded = tokenizer(list(choices), add_special_tokens=False)["input_ids"]
        for choice, token_ids in zip(choices, encoded, strict=True):
            if not token_ids:
                raise BackendError(f"choice {choice!r} has no tokens; pass non-empty choices")
        tokenized.append([list(token_ids) for token_ids in encoded])
    return tokenized


def _positions(attention_mask: Any) -> Any:
    # Left-padded rows start counting at their first real token, as generate does.
    return (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)


def score_batch(
    backend: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    choices_per_item: Sequence[Sequence[str]],
    reuse_prefix: bool = True,
) -> ScoredBatch:
    """Score every choice of every item as the continuation of its image and prompt."""
    import torch

    backend._require_loaded()
    if len(choices_per_item) != len(images):
        raise BackendError(f"got {len(images)} images but {len(choices_per_item)} choice lists; pass one per image")

    started = time.perf_counter()
    inputs = backend.build_inputs(images, prompts)
    tokenized = _tokenize_choices(backend.tokenizer, choices_per_item)
    preprocess_s = time.perf_counter() - started

    eos_id = eos_token_ids(backend.model, backend.tokenizer)[0]
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            if reuse_prefix:
                totals, prefilled = _score_with_packed_prefix(backend, inputs, tokenized, eos_id)
            else:
                totals, prefilled = _score_with_full_rows(backend, inputs, tokenized, eos_id)
    except RuntimeError as error:
        raise BackendError(f"scoring failed for model {backend.model_id!r}: {error}") from error
    generate_s = time.perf_counter() - started

    # Each choice is scored over its tokens plus end of sequence.
    means = [
        [total / (len(token_ids) + 1) for total, token_ids in zip(item_totals, item_tokens, strict=True)]
        for item_totals, item_tokens in zip(totals, tokenized, strict=True)
    ]
    prompt_tokens = [int(count) for count in inputs["attention_mask"].sum(dim=1).tolist()]
    return ScoredBatch(means, totals, prompt_tokens, prefilled, BatchTimings(preprocess_s=preprocess_s, generate_s=generate_s))


def _flatten(tokenized: list[list[list[int]]]) -> tuple[list[int], list[list[int]]]:
    """Return (item index of each candidate row, candidate tokens of each row)."""
    items = [item for item, choices in enumerate(tokenized) for _ in choices]
    rows = [token_ids for choices in tokenized for token_ids in choices]
    return items, rows


def _unflatten(values: list[float], tokenized: list[list[list[int]]]) -> list[list[float]]:
    nested, start = [], 0
    for choices in tokenized:
        nested.append(values[start : start + len(choices)])
        start += len(choices)
    return nested


def _packed_candidates(tokenized: list[list[list[int]]], prefix_mask: Any, dtype: Any) -> tuple[Any, Any, Any, list[list[int]]]:
    """Lay out every candidate of an item side by side in one row after the item's prefix.

    Returns the token ids, position ids, additive 4D attention mask and the
    start offset of each candidate in its row. A candidate token attends to
    the real prefix tokens and to the earlier tokens of its own candidate
    only, and its positions continue from the prefix, so each candidate is
    scored as if it were alone after the prompt.
    """
    import torch

    device = prefix_mask.device
    batch, prefix_length = prefix_mask.shape
    length = max(sum(len(token_ids) for token_ids in choices) for choices in tokenized)
    input_ids = torch.zeros((batch, length), dtype=torch.long, device=device)
    position_ids = torch.zeros((batch, length), dtype=torch.long, device=device)
    allowed = torch.zeros((batch, length, prefix_length + length), dtype=torch.bool, device=device)
    allowed[:, :, :prefix_length] = prefix_mask[:, None, :].bool()
    # Padding positions attend to themselves so that no row of the mask is empty.
    allowed[:, :, prefix_length:] = torch.eye(length, dtype=torch.bool, device=device)

    prefix_lengths = prefix_mask.sum(dim=1).tolist()
    offsets: list[list[int]] = []
    for item, choices in enumerate(tokenized):
        item_offsets, offset = [], 0
        for token_ids in choices:
            size = len(token_ids)
            span = slice(offset, offset + size)
            input_ids[item, span] = torch.tensor(token_ids, dtype=torch.long)
            position_ids[item, span] = prefix_lengths[item] + torch.arange(size, device=device)
            keys = slice(prefix_length + offset, prefix_length + offset + size)
            allowed[item, span, keys] = torch.tril(torch.ones((size, size), dtype=torch.bool, device=device))
            item_offsets.append(offset)
            offset += size
        offsets.append(item_offsets)

    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return input_ids, position_ids, mask[:, None, :, :], offsets


def _score_with_packed_prefix(backend: Any, inputs: Any, tokenized: list[list[list[int]]], eos_id: int) -> tuple[list[list[float]], int]:
    """Run each prefix once, then all of its candidates in one row on top of its key/value cache."""
    import torch

    model = backend.model
    attention_mask = inputs["attention_mask"]
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    prefix = model(**inputs, position_ids=_positions(attention_mask), use_cache=True, return_dict=True, **extra)
    first_log_probs = torch.log_softmax(prefix.logits[:, -1, :].float(), dim=-1)

    input_ids, position_ids, mask, offsets = _packed_candidates(tokenized, attention_mask, model.dtype)
    output = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids,
        past_key_values=prefix.past_key_values,
        use_cache=True,
        return_dict=True,
    )
    log_probs = torch.log_softmax(output.logits.float(), dim=-1)

    totals: list[list[float]] = []
    for item, choices in enumerate(tokenized):
        item_totals = []
        for token_ids, offset in zip(choices, offsets[item], strict=True):
            # The prefix predicts the first token; position j of the candidate
            # predicts token j + 1, and its last position predicts end of sequence.
            targets = torch.tensor([*token_ids[1:], eos_id], dtype=torch.long, device=log_probs.device)
            continuation = log_probs[item, offset : offset + len(token_ids)].gather(1, targets[:, None]).sum()
            item_totals.append(float(first_log_probs[item, token_ids[0]] + continuation))
        totals.append(item_totals)

    prefilled = int(attention_mask.sum()) + sum(len(token_ids) for choices in tokenized for token_ids in choices)
    return totals, prefilled


def _score_with_full_rows(backend: Any, inputs: Any, tokenized: list[list[list[int]]], eos_id: int) -> tuple[list[list[float]], int]:
    """Run one full row (image, prompt and candidate) per candidate: the baseline without prefix reuse."""
    import torch

    model = backend.model
    attention_mask = inputs["attention_mask"]
    items, rows = _flatten(tokenized)
    device = attention_mask.device

    prompts = [inputs["input_ids"][item][attention_mask[item].bool()].tolist() for item in range(attention_mask.shape[0])]
    full_rows = [prompts[item] + token_ids for item, token_ids in zip(items, rows, strict=True)]
    length = max(len(row) for row in full_rows)
    pad_id = backend.tokenizer.pad_token_id
    input_ids = torch.full((len(full_rows), length), pad_id, dtype=torch.long, device=device)
    row_mask = torch.zeros((len(full_rows), length), dtype=torch.long, device=device)
    for position, row in enumerate(full_rows):
        input_ids[position, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        row_mask[position, length - len(row) :] = 1

    # Image tensors (pixel values and their masks) are repeated per candidate row.
    item_index = torch.tensor(items, dtype=torch.long, device=device)
    repeated = {
        name: value.index_select(0, item_index)
        for name, value in inputs.items()
        if name not in ("input_ids", "attention_mask") and hasattr(value, "index_select")
    }

    longest = max(len(token_ids) for token_ids in rows)
    extra = {"logits_to_keep": longest + 1} if _accepts(model, "logits_to_keep") else {}
    output = model(
        input_ids=input_ids,
        attention_mask=row_mask,
        position_ids=_positions(row_mask),
        use_cache=False,
        return_dict=True,
        **repeated,
        **extra,
    )
    logits = output.logits[:, -(longest + 1) :, :]
    log_probs = torch.log_softmax(logits.float(), dim=-1)

    totals = []
    for row, token_ids in enumerate(rows):
        # Rows are left-padded, so every row ends with its candidate; the
        # position before the candidate predicts its first token.
        start = longest - len(token_ids)
        targets = torch.tensor([*token_ids, eos_id], dtype=torch.long, device=log_probs.device)
        picked = log_probs[row, start : start + len(targets)].gather(1, targets[:, None])
        totals.append(float(picked.sum()))

    prefilled = sum(len(row) for row in full_rows)
    return _unflatten(totals, tokenized), prefilled


def score_choices(
    backend: Any,
    images: Sequence[Image.Image],
    requests: Sequence[PromptRequest],
    max_new_tokens: int | None = None,
) -> tuple[list[ModelAnswer], BatchTimings]:
    """Score each request's choices in one batched pass with prefix reuse.

    `max_new_tokens` is ignored because nothing is generated.
    """
    from service.protocols.base import ModelAnswer

    choices_per_item = [resolve_choices(request.choices) for request in requests]
    scored = score_batch(backend, images, [request.text for request in requests], choices_per_item)

    answers = []
    for choices, means, prompt_tokens in zip(choices_per_item, scored.mean_log_probs, scored.prompt_tokens, strict=True):
        best = max(range(len(choices)), key=lambda index: means[index])
        answers.append(
            ModelAnswer(
                text=choices[best],
                prompt_tokens=prompt_tokens,
                generated_tokens=0,
                choice_scores=[round(value, 6) for value in means],
            )
        )
    return answers, scored.timings
