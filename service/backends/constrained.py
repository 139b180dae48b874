"""Taxonomy-constrained decoding: a prefix trie over tokenized class names.

Generation is restricted token by token to sequences that spell one of the
request's choice strings (class names and synonyms), so every answer is a
valid class by construction and no class list goes into the prompt. The trie
is applied as a `LogitsProcessor` inside batched beam search.

Each choice is inserted in several spellings, because a model may start its
answer with or without a space and with or without a capital letter:
the string as given, with a leading space, with the first letter capitalized,
and lowercased. A spelling that another choice owns exactly is left to that
choice. End of sequence is allowed only at nodes where a spelling is
complete, so "crane" can end after its last token while "crane bird" can
still continue from there.

Choices travel through the BentoML batcher inside each batch item. A whole
taxonomy has about 2000 names and synonyms, so a run registers the list once
with `register_choice_set` and sends the one-string reference it returns
("@choices:<key>"); the backend resolves it with `resolve_choices` in the same
process. Candidate subsets are small and travel inline.

A constrained answer (`ModelAnswer`) carries the top-k distinct choices, best
first: `text` holds the choice strings one per line, and `choice_scores`
holds their sequence log-probabilities (the sum of the unconstrained model's
token log-probabilities, end of sequence included) in the same order. When
several spellings of one choice come back, their probabilities are summed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from service.backends.base import BackendError, BatchTimings

if TYPE_CHECKING:
    from service.protocols.base import ModelAnswer, PromptRequest

logger = logging.getLogger(__name__)

CHOICE_SET_PREFIX = "@choices:"

# Beam search keeps this many beams per requested class, because beams often
# end on other spellings of a class already found (" tabby cat", "Tabby cat").
BEAMS_PER_CLASS = 2
MAX_BEAMS = 16

# Tries of candidate subsets are cached too, so the cache is bounded per tokenizer.
MAX_CACHED_TRIES = 128

_choice_sets: dict[str, tuple[str, ...]] = {}
_choice_sets_lock = threading.Lock()


def register_choice_set(key: str, choices: Sequence[str]) -> str:
    """Store `choices` under `key` for this process and return the reference to send instead."""
    if not choices:
        raise ValueError(f"choice set {key!r} is empty; register at least one choice")
    with _choice_sets_lock:
        _choice_sets[key] = tuple(choices)
    return CHOICE_SET_PREFIX + key


def resolve_choices(choices: Sequence[str]) -> tuple[str, ...]:
    """Return the choice strings of a request, expanding a single "@choices:<key>" reference."""
    if len(choices) == 1 and choices[0].startswith(CHOICE_SET_PREFIX):
        key = choices[0].removeprefix(CHOICE_SET_PREFIX)
        with _choice_sets_lock:
            registered = _choice_sets.get(key)
        if registered is None:
            raise BackendError(
                f"choice set {key!r} is not registered in this process; register it with register_choice_set "
                "before sending its reference"
            )
        return registered
    if not choices:
        raise BackendError("the request has no choices; constrained decoding and scoring need at least one")
    return tuple(choices)


def spelling_variants(choice: str) -> list[str]:
    """Return the spellings of `choice` that the trie accepts, the choice itself first."""
    capitalized = choice[:1].upper() + choice[1:]
    lowered = choice.lower()
    variants = [choice, " " + choice, capitalized, " " + capitalized, lowered, " " + lowered]
    return list(dict.fromkeys(variants))


class ChoiceTrie:
    """A prefix trie over the token sequences of a set of choice strings.

    Node 0 is the root. Every node stores the tokens that continue some
    spelling and, where a spelling ends, the index of its choice.
    """

    def __init__(self, choices: Sequence[str], tokenizer: Any, eos_token_ids: Sequence[int]) -> None:
        if not choices:
            raise ValueError("a choice trie needs at least one choice")
        for choice in choices:
            if not choice.strip() or "\n" in choice:
                raise ValueError(f"invalid choice {choice!r}: choices must be non-empty single-line strings")
        if not eos_token_ids:
            raise ValueError("a choice trie needs at least one end-of-sequence token id")

        self.choices = tuple(choices)
        self.eos_token_ids = tuple(int(token) for token in eos_token_ids)
        self._children: list[dict[int, int]] = [{}]
        self._choice_at: list[int | None] = [None]
        self.max_depth = 0
        self.num_sequences = 0
        self._insert_all(tokenizer)

    def _insert_all(self, tokenizer: Any) -> None:
        # Exact spellings first, so a variant of one choice ("german shepherd")
        # never takes over a node where another choice is spelled exactly.
        exact = [(index, choice) for index, choice in enumerate(self.choices)]
        variants = [
            (index, variant)
            for index, choice in enumerate(self.choices)
            for variant in spelling_variants(choice)[1:]
        ]
        for pairs in (exact, variants):
            encoded = tokenizer([text for _, text in pairs], add_special_tokens=False)["input_ids"]
            for (index, _), token_ids in zip(pairs, encoded, strict=True):
                self._insert(token_ids, index)

    def _insert(self, token_ids: Sequence[int], choice_index: int) -> None:
        if not token_ids:
            return
        node = 0
        for token in token_ids:
            child = self._children[node].get(token)
            if child is None:
                child = len(self._children)
                self._children[node][token] = child
                self._children.append({})
                self._choice_at.append(None)
            node = child
        if self._choice_at[node] is None:
            self._choice_at[node] = choice_index
            self.num_sequences += 1
            self.max_depth = max(self.max_depth, len(token_ids))

    @property
    def num_nodes(self) -> int:
        return len(self._children)

    def walk(self, token_ids: Sequence[int]) -> int | None:
        """Return the node reached by `token_ids` from the root, or None when they leave the trie."""
        node = 0
        for token in token_ids:
            child = self._children[node].get(int(token))
            if child is None:
                return None
            node = child
        return node

    def allowed_tokens(self, node: int) -> list[int]:
        """Return the token ids that may follow `node`: its children, plus end of sequence where a spelling ends."""
        tokens = list(self._children[node])
        if self._choice_at[node] is not None:
            tokens.extend(self.eos_token_ids)
        return tokens

    def choice_of(self, token_ids: Sequence[int]) -> int | None:
        """Return the choice index spelled by `token_ids` (end-of-sequence tokens stripped), or None."""
        tokens = list(token_ids)
        while tokens and tokens[-1] in self.eos_token_ids:
            tokens.pop()
        node = self.walk(tokens)
        return None if node is None else self._choice_at[node]


# Tokenizer -> (choices key -> trie). Weak keys drop a tokenizer's tries with it.
_tries: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[str, ...], ChoiceTrie]] = weakref.WeakKeyDictionary()
_tries_lock = threading.Lock()


def cached_trie(tokenizer: Any, choices: tuple[str, ...], eos_token_ids: Sequence[int]) -> ChoiceTrie:
    """Return the trie of `choices` for `tokenizer`, building it on first use."""
    key = (*choices, "\0eos", *map(str, eos_token_ids))
    with _tries_lock:
        per_tokenizer = _tries.setdefault(tokenizer, OrderedDict())
        trie = per_tokenizer.get(key)
        if trie is not None:
            per_tokenizer.move_to_end(key)
            return trie

    started = time.perf_counter()
    trie = ChoiceTrie(choices, tokenizer, eos_token_ids)
    logger.info(
        "built choice trie: %d choices, %d spellings, %d nodes, max depth %d, in %.2f s",
        len(choices),
        trie.num_sequences,
        trie.num_nodes,
        trie.max_depth,
        time.perf_counter() - started,
    )
    with _tries_lock:
        per_tokenizer = _tries.setdefault(tokenizer, OrderedDict())
        per_tokenizer[key] = trie
        while len(per_tokenizer) > MAX_CACHED_TRIES:
            per_tokenizer.popitem(last=False)
    return trie


class TrieLogitsProcessor:
    """A transformers `LogitsProcessor` that keeps each row of a batch inside its item's trie.

    Row r of the (batch * beams) rows belongs to batch item r // num_beams.
    Tokens outside the trie get -inf. A row that has already left the trie
    or finished (beam search pads it) may only emit end of sequence, so no row
    ever has every token masked.
    """

    def __init__(self, tries: Sequence[ChoiceTrie], num_beams: int, prompt_length: int) -> None:
        self.tries = list(tries)
        self.num_beams = num_beams
        self.prompt_length = prompt_length
        self._allowed_cache: dict[tuple[int, int], Any] = {}

    def _allowed(self, trie_position: int, node: int | None, device: Any) -> Any:
        import torch

        key = (trie_position, -1 if node is None else node)
        allowed = self._allowed_cache.get(key)
        if allowed is None:
            trie = self.tries[trie_position]
            tokens = list(trie.eos_token_ids) if node is None else trie.allowed_tokens(node)
            allowed = torch.tensor(tokens, dtype=torch.long, device=device)
            self._allowed_cache[key] = allowed
        return allowed

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        mask = torch.full_like(scores, -math.inf)
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, tokens in enumerate(generated):
            trie_position = row // self.num_beams
            node = self.tries[trie_position].walk(tokens)
            mask[row, self._allowed(trie_position, node, scores.device)] = 0.0
        return scores + mask


@dataclass(frozen=True)
class RankedChoice:
    """One distinct choice found by beam search, with its sequence log-probability and token ids."""

    choice_index: int
    log_prob: float
    token_ids: tuple[int, ...]


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Return the end-of-sequence token ids of the model's generation config, or the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if not ids:
        raise BackendError("the model defines no end-of-sequence token; constrained decoding needs one to end answers")
    return ids


def beams_for(top_k: int, trie: ChoiceTrie) -> int:
    """Return the beam count for `top_k` distinct classes, at least 2 and at most the trie's spellings."""
    return max(2, min(BEAMS_PER_CLASS * top_k, MAX_BEAMS, trie.num_sequences))


def rank_beams(trie: ChoiceTrie, sequences: Sequence[Sequence[int]], scores: Sequence[float]) -> list[RankedChoice]:
    """Merge finished beams into distinct choices, best first.

    Beams that did not end on a complete spelling (possible only when fewer
    spellings than beams exist) are dropped. Several spellings of one choice
    add up their probabilities.
    """
    merged: dict[int, RankedChoice] = {}
    for token_ids, score in zip(sequences, scores, strict=True):
        if not math.isfinite(score):
            continue
        choice_index = trie.choice_of(token_ids)
        if choice_index is None or not token_ids or token_ids[-1] not in trie.eos_token_ids:
            continue
        previous = merged.get(choice_index)
        if previous is None:
            merged[choice_index] = RankedChoice(choice_index, float(score), tuple(token_ids))
            continue
        total = _log_add_exp(previous.log_prob, float(score))
        best_tokens = previous.token_ids if previous.log_prob >= score else tuple(token_ids)
        merged[choice_index] = RankedChoice(choice_index, total, best_tokens)
    return sorted(merged.values(), key=lambda ranked: -ranked.log_prob)


def _log_add_exp(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _strip_padding(token_ids: Sequence[int], eos_ids: Sequence[int], pad_id: int | None) -> list[int]:
    """Cut a generated row after its first end-of-sequence token."""
    kept: list[int] = []
    for token in token_ids:
        kept.append(int(token))
        if token in eos_ids:
            return kept
    # No end of sequence: drop trailing padding so the trie walk sees only real tokens.
    while kept and pad_id is not None and kept[-1] == pad_id and pad_id not in eos_ids:
        kept.pop()
    return kept


def generate_ranked(
    backend: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    tries: Sequence[ChoiceTrie],
    num_beams: int,
) -> tuple[list[list[RankedChoice]], list[int], BatchTimings]:
    """Run one batched beam search restricted to each item's trie.

    Returns the distinct choices per item (best first), the prompt tokens
    per item and the stage timings. Every item uses `num_beams` beams and
    returns all of them, so up to `num_beams` distinct choices.
    """
    import torch
    from transformers import LogitsProcessorList

    started = time.perf_counter()
    inputs = backend.build_inputs(images, prompts)
    preprocess_s = time.perf_counter() - started

    eos_ids = list(tries[0].eos_token_ids)
    prompt_length = inputs["input_ids"].shape[1]
    processor = TrieLogitsProcessor(tries, num_beams, prompt_length)
    # A spelling needs at most max_depth tokens plus end of sequence, so this
    # limit never cuts an answer short whatever the request's max_new_tokens.
    max_new_tokens = max(trie.max_depth for trie in tries) + 1

    started = time.perf_counter()
    # NOTE: transformers' beam search copies the prompt to one row per beam
    # before the prefill, so the image and prompt are computed num_beams times.
    try:
        with torch.inference_mode():
            output = backend.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                num_return_sequences=num_beams,
                do_sample=False,
                # length_penalty 0 makes a beam's score its plain sum of
                # log-probabilities, the sequence log-probability.
                length_penalty=0.0,
                early_stopping=True,
                logits_processor=LogitsProcessorList([processor]),
                eos_token_id=eos_ids,
                pad_token_id=backend.tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_scores=True,
            )
    except RuntimeError as error:
        raise BackendError(f"constrained generation failed for model {backend.model_id!r}: {error}") from error
    generate_s = time.perf_counter() - started

    rows = output.sequences[:, prompt_length:].tolist()
    row_scores = output.sequences_scores.tolist()
    pad_id = backend.tokenizer.pad_token_id
    ranked: list[list[RankedChoice]] = []
    for item, trie in enumerate(tries):
        span = range(item * num_beams, (item + 1) * num_beams)
        sequences = [_strip_padding(rows[row], eos_ids, pad_id) for row in span]
        ranked.append(rank_beams(trie, sequences, [row_scores[row] for row in span]))

    prompt_tokens = [int(count) for count in inputs["attention_mask"].sum(dim=1).tolist()]
    return ranked, prompt_tokens, BatchTimings(preprocess_s=preprocess_s, generate_s=generate_s)


def constrained_generate(
    backend: Any,
    images: Sequence[Image.Image],
    requests: Sequence[PromptRequest],
    max_new_tokens: int | None = None,
) -> tuple[list[ModelAnswer], BatchTimings]:
    """Answer each request with its top `num_beams` distinct choices, in as few beam searches as beam counts allow.

    `max_new_tokens` is ignored: the longest spelling in the trie sets the
    generation length, so no answer is cut short.
    """
    from service.protocols.base import ModelAnswer

    backend._require_loaded()
    eos_ids = eos_token_ids(backend.model, backend.tokenizer)
    tries = [cached_trie(backend.tokenizer, resolve_choices(request.choices), eos_ids) for request in requests]

    # One generate call runs one beam count, so items are grouped by it.
    groups: dict[int, list[int]] = {}
    for position, (request, trie) in enumerate(zip(requests, tries, strict=True)):
        groups.setdefault(beams_for(request.num_beams, trie), []).append(position)

    answers: list[ModelAnswer | None] = [None] * len(requests)
    total = BatchTimings()
    for num_beams, positions in groups.items():
        ranked, prompt_tokens, timings = generate_ranked(
            backend,
            [images[i] for i in positions],
            [requests[i].text for i in positions],
            [tries[i] for i in positions],
            num_beams,
        )
        total.preprocess_s += timings.preprocess_s
        total.generate_s += timings.generate_s

        for offset, position in enumerate(positions):
            top = ranked[offset][: requests[position].num_beams]
            trie = tries[position]
            answers[position] = ModelAnswer(
                text="\n".join(trie.choices[choice.choice_index] for choice in top),
                prompt_tokens=prompt_tokens[offset],
                generated_tokens=len(top[0].token_ids) if top else 0,
                choice_scores=[round(choice.log_prob, 6) for choice in top],
            )
    return [answer for answer in answers if answer is not None], total
