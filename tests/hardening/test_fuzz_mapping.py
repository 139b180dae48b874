"""Property-based tests: any model answer parses and maps (or abstains) without raising, deterministically.

The answers come from hypothesis: arbitrary Unicode including control and
private-use characters (no surrogates), very long strings, and class names
wrapped the way chat models wrap them. The mapper is the real one, the
imagenet-1k taxonomy with the bundled MiniLM encoder.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapping import DEFAULT_CACHE_DIR, Mapper, MappingResult, load_encoder, load_taxonomy, parse_answer
from mapping.parsing import parse_option_letter, split_answers

TAXONOMY = load_taxonomy("imagenet-1k")
CLASS_NAMES = [entry.name for entry in TAXONOMY.classes]
CLASS_IDS = [entry.id for entry in TAXONOMY.classes]
TAXONOMY_IDS = frozenset(CLASS_IDS)

WRAPPERS = [
    "{}",
    "This image shows a {}.",
    "**{}**",
    "Answer: {}",
    "I'm not sure, but it looks like a {}",
    "1. {}\n2. {}",
    "{}, {} and {}",
    "The answer is ({})",
    "\"{}\"",
    "{}\n\nExplanation: the picture has {} in it.",
]

# Text as models and attackers produce it: any code point but surrogates,
# which cannot travel in UTF-8 at all.
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=400)
long_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=2000, max_size=6000)


@st.composite
def wrapped_names(draw) -> str:
    template = draw(st.sampled_from(WRAPPERS))
    names = [draw(st.sampled_from(CLASS_NAMES)) for _ in range(template.count("{}"))]
    noise = draw(st.sampled_from(["", " ", "!!", "\u200b", "\t", " 🐱", "\x00"]))
    return template.format(*names) + noise


answers = st.one_of(any_text, wrapped_names(), long_text)
# map_multilabel encodes every list item, so long answers would make one example take seconds.
short_answers = st.one_of(any_text, wrapped_names())

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Each mapper example may run the text encoder, so these get fewer examples.
FUZZ_MAPPER = settings(FUZZ, max_examples=40)


@pytest.fixture(scope="module")
def mapper() -> Mapper:
    return Mapper(TAXONOMY, load_encoder(), cache_dir=Path(DEFAULT_CACHE_DIR).expanduser())


def assert_valid(result: MappingResult, allowed: set[str] | None = None) -> None:
    assert isinstance(result, MappingResult)
    assert result.method in ("exact", "synonym", "embedding", "option", "none")
    if result.abstain:
        assert result.labels == []
        assert result.method == "none"
        return
    assert result.labels, "a result that does not abstain lists at least one label"
    for label in result.labels:
        assert label.id in TAXONOMY_IDS
        assert math.isfinite(label.score)
        if allowed is not None:
            assert label.id in allowed
    assert math.isfinite(result.similarity)
    assert math.isfinite(result.margin)


@FUZZ
@given(answer=answers)
def test_parse_answer_total_and_deterministic(answer: str) -> None:
    first = parse_answer(answer)
    assert first == parse_answer(answer)
    assert first.abstain == (first.keys == ())
    for key in first.keys:
        assert key.strip() == key
        assert key


@FUZZ
@given(answer=answers, num_options=st.integers(min_value=1, max_value=26))
def test_parse_option_letter_in_range(answer: str, num_options: int) -> None:
    index = parse_option_letter(answer, num_options)
    assert index is None or 0 <= index < num_options
    assert index == parse_option_letter(answer, num_options)


@FUZZ
@given(answer=answers)
def test_split_answers_yields_text(answer: str) -> None:
    items = split_answers(answer)
    assert all(isinstance(item, str) and item for item in items)
    assert items == split_answers(answer)


@FUZZ_MAPPER
@given(answer=answers, top_k=st.integers(min_value=1, max_value=20))
def test_map_total_and_deterministic(mapper: Mapper, answer: str, top_k: int) -> None:
    result = mapper.map(answer, top_k=top_k)
    assert_valid(result)
    assert result.to_dict() == mapper.map(answer, top_k=top_k).to_dict()


@FUZZ_MAPPER
@given(answer=answers, candidates=st.lists(st.sampled_from(CLASS_IDS), min_size=1, max_size=8, unique=True))
def test_map_respects_candidates(mapper: Mapper, answer: str, candidates: list[str]) -> None:
    result = mapper.map(answer, top_k=5, candidates=candidates)
    assert_valid(result, allowed=set(candidates))


@FUZZ_MAPPER
@given(answer=short_answers)
def test_map_multilabel_total_and_deterministic(mapper: Mapper, answer: str) -> None:
    results = mapper.map_multilabel(answer, top_k=3)
    assert results, "map_multilabel returns at least one result (an abstain when nothing maps)"
    for result in results:
        assert_valid(result)
    assert [result.to_dict() for result in results] == [
        result.to_dict() for result in mapper.map_multilabel(answer, top_k=3)
    ]


@FUZZ_MAPPER
@given(answer=answers, options=st.lists(st.sampled_from(CLASS_IDS), min_size=2, max_size=5, unique=True))
def test_map_option_stays_within_options(mapper: Mapper, answer: str, options: list[str]) -> None:
    result = mapper.map_option(answer, options)
    assert_valid(result, allowed=set(options))
    assert result.to_dict() == mapper.map_option(answer, options).to_dict()


@FUZZ_MAPPER
@given(letter=st.sampled_from("ABCDE"), options=st.lists(st.sampled_from(CLASS_IDS), min_size=5, max_size=5, unique=True))
def test_map_option_letter_selects_option(mapper: Mapper, letter: str, options: list[str]) -> None:
    result = mapper.map_option(f"({letter})", options)
    assert result.method == "option"
    assert [label.id for label in result.labels] == [options["ABCDE".index(letter)]]
