"""The choice trie and its logits processor, with the project's byte-level BPE tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.backends.base import BackendError
from service.backends.constrained import (
    ChoiceTrie,
    TrieLogitsProcessor,
    cached_trie,
    rank_beams,
    register_choice_set,
    resolve_choices,
    spelling_variants,
)

EOS = 2


def tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def spelled_strings(trie: ChoiceTrie, tokenizer, node: int = 0, prefix: tuple[int, ...] = ()) -> list[str]:
    """Decode every path from `node` that the trie lets end with end of sequence."""
    found = []
    for token in trie.allowed_tokens(node):
        if token in trie.eos_token_ids:
            found.append(tokenizer.decode(list(prefix)))
        else:
            found.extend(spelled_strings(trie, tokenizer, trie.walk([*prefix, token]), (*prefix, token)))
    return found


def test_prefix_name_ends_or_continues(tokenizer):
    trie = ChoiceTrie(["crane", "crane bird"], tokenizer, [EOS])

    crane = trie.walk(tokens(tokenizer, "crane"))
    crane_bird = tokens(tokenizer, "crane bird")

    assert crane is not None
    assert EOS in trie.allowed_tokens(crane)
    assert trie.choice_of(tokens(tokenizer, "crane")) == 0
    assert trie.choice_of([*crane_bird, EOS]) == 1
    assert EOS not in trie.allowed_tokens(trie.walk(crane_bird[:-1])) or trie.choice_of(crane_bird[:-1]) is not None


def test_end_of_sequence_only_where_complete(tokenizer):
    trie = ChoiceTrie(["tabby cat", "espresso"], tokenizer, [EOS])

    assert EOS not in trie.allowed_tokens(0)
    for name in ("tabby cat", "espresso"):
        ids = tokens(tokenizer, name)
        for length in range(1, len(ids)):
            node = trie.walk(ids[:length])
            assert EOS not in trie.allowed_tokens(node), f"{name!r} may end after {length} tokens"
        assert EOS in trie.allowed_tokens(trie.walk(ids))


def test_spelling_variants_reach_their_choice(tokenizer):
    trie = ChoiceTrie(["tabby cat", "Granny Smith"], tokenizer, [EOS])

    for variant in (" tabby cat", "Tabby cat", " Tabby cat"):
        assert trie.choice_of(tokens(tokenizer, variant)) == 0, variant
    for variant in ("granny smith", " Granny Smith", " granny smith"):
        assert trie.choice_of(tokens(tokenizer, variant)) == 1, variant
    assert trie.choice_of(tokens(tokenizer, "tabby")) is None
    assert trie.choice_of(tokens(tokenizer, "TABBY CAT")) is None


def test_exact_spelling_wins_over_variant(tokenizer):
    # "cardigan" is a variant of "Cardigan" and a choice of its own.
    trie = ChoiceTrie(["Cardigan", "cardigan"], tokenizer, [EOS])

    assert trie.choice_of(tokens(tokenizer, "Cardigan")) == 0
    assert trie.choice_of(tokens(tokenizer, "cardigan")) == 1


def test_invalid_choices_rejected(tokenizer):
    with pytest.raises(ValueError, match="single-line"):
        ChoiceTrie(["tabby\ncat"], tokenizer, [EOS])
    with pytest.raises(ValueError, match="non-empty"):
        ChoiceTrie(["  "], tokenizer, [EOS])
    with pytest.raises(ValueError, match="at least one choice"):
        ChoiceTrie([], tokenizer, [EOS])


def test_whole_taxonomy_spells_only_its_names(tokenizer, imagenet):
    names = list(dict.fromkeys(name for entry in imagenet for name in entry.all_names()))
    trie = ChoiceTrie(names, tokenizer, [EOS])

    spelled = spelled_strings(trie, tokenizer)
    allowed = {variant for name in names for variant in spelling_variants(name)}

    assert len(spelled) == trie.num_sequences
    assert set(spelled) <= allowed
    assert set(names) <= set(spelled)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcdeéz -'", min_size=1, max_size=12).filter(str.strip), min_size=1, max_size=8, unique=True))
def test_random_choices_round_trip(tokenizer, choices):
    trie = ChoiceTrie(choices, tokenizer, [EOS])

    for index, choice in enumerate(choices):
        assert trie.choice_of([*tokens(tokenizer, choice), EOS]) == index
    for text in spelled_strings(trie, tokenizer):
        owner = trie.choice_of(tokens(tokenizer, text))
        assert owner is not None
        assert text in spelling_variants(choices[owner])


def test_processor_masks_per_item(tokenizer):
    cats = ChoiceTrie(["tabby cat"], tokenizer, [EOS])
    coffee = ChoiceTrie(["espresso"], tokenizer, [EOS])
    processor = TrieLogitsProcessor([cats, coffee], num_beams=2, prompt_length=3)
    vocab = len(tokenizer)
    prompt = [7, 8, 9]
    first_cat = tokens(tokenizer, "tabby cat")
    input_ids = torch.tensor([prompt + first_cat[:1], prompt + [EOS], prompt + tokens(tokenizer, "espresso")[:1], prompt + [EOS]])

    scores = processor(input_ids, torch.zeros(4, vocab))

    finite = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in scores]
    assert finite[0] == set(cats.allowed_tokens(cats.walk(first_cat[:1])))
    # A row that left its trie may only end.
    assert finite[1] == {EOS}
    assert finite[2] == set(coffee.allowed_tokens(coffee.walk(tokens(tokenizer, "espresso")[:1])))
    assert finite[3] == {EOS}


def test_rank_beams_merges_spellings(tokenizer):
    trie = ChoiceTrie(["tabby cat", "espresso"], tokenizer, [EOS])
    sequences = [
        [*tokens(tokenizer, "tabby cat"), EOS],
        [*tokens(tokenizer, "espresso"), EOS],
        [*tokens(tokenizer, " tabby cat"), EOS],
        tokens(tokenizer, "espresso")[:1],
    ]

    ranked = rank_beams(trie, sequences, [math.log(0.3), math.log(0.4), math.log(0.2), -0.1])

    assert [choice.choice_index for choice in ranked] == [0, 1]
    assert ranked[0].log_prob == pytest.approx(math.log(0.5))
    assert ranked[1].log_prob == pytest.approx(math.log(0.4))


def test_choice_set_reference_resolves():
    reference = register_choice_set("test:small", ["tabby cat", "espresso"])

    assert resolve_choices((reference,)) == ("tabby cat", "espresso")
    assert resolve_choices(("tabby cat",)) == ("tabby cat",)
    with pytest.raises(BackendError, match="not registered"):
        resolve_choices(("@choices:test:missing",))


def test_trie_cache_reuses_tries(tokenizer):
    first = cached_trie(tokenizer, ("tabby cat", "espresso"), [EOS])

    assert cached_trie(tokenizer, ("tabby cat", "espresso"), [EOS]) is first
    assert cached_trie(tokenizer, ("espresso", "tabby cat"), [EOS]) is not first
