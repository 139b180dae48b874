"""Answer parsing: wrappers, refusals, lists, option letters and normalization (no model needed)."""

from __future__ import annotations

import pytest

from mapping import load_taxonomy, parse_answer, parse_option_letter, split_answers
from mapping.normalize import normalize_text, singular_key, singularize_word
from mapping.parsing import is_non_answer_key, is_refusal


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("This image shows a tabby cat.", "tabby cat"),
        ("Answer: \"Golden retriever\"", "golden retriever"),
        ("**espresso**", "espresso"),
        ("The main object in the image is a red fox.", "red fox"),
        ("I think it is a lynx", "lynx"),
        ("It looks like an airliner in the image.", "airliner"),
        ("consommé", "consomme"),
        ("  Tabby   Cat!! ", "tabby cat"),
        ("jack-o'-lantern", "jack o lantern"),
    ],
)
def test_parse_strips_wrappers(answer: str, normalized: str) -> None:
    parsed = parse_answer(answer)

    assert parsed.normalized == normalized
    assert parsed.keys[0] == normalized
    assert not parsed.abstain
    assert parsed.raw == answer


def test_parse_keys_add_count_and_head() -> None:
    parsed = parse_answer("two tabby cats sitting on a laptop")

    assert parsed.keys == ("two tabby cats sitting on a laptop", "tabby cats sitting on a laptop", "tabby cats")


@pytest.mark.parametrize(
    "answer",
    ["", "  ", "?", "unknown", "N/A", "I don't know", "I can't tell.", "Not sure.", "Sorry, I cannot help with that.",
     "As an AI model I cannot see the image", "The image is too blurry to tell.", "none", "There is nothing in the image."],
)
def test_refusals_abstain(answer: str) -> None:
    parsed = parse_answer(answer)

    assert parsed.abstain
    assert parsed.keys == ()


@pytest.mark.parametrize("answer", ["tabby cat", "unknown bird with a red crest", "nothing but a goldfish"])
def test_answers_are_not_refusals(answer: str) -> None:
    assert not is_refusal(answer)


def test_hedged_refusal_keeps_answer() -> None:
    parsed = parse_answer("I'm not sure, but it might be a goldfish.")

    assert not parsed.abstain
    assert parsed.normalized == "goldfish"


def test_parse_caps_long_answer_cost() -> None:
    parsed = parse_answer("lynx " * 5000)

    assert parsed.raw == "lynx " * 5000
    assert len(parsed.normalized) <= 2000


@pytest.mark.parametrize(
    ("answer", "items"),
    [
        ("a cat and a dog", ["a cat", "a dog"]),
        ("cat, dog", ["cat", "dog"]),
        ("- cat\n- dog\n", ["cat", "dog"]),
        ("1. tabby cat\n2) laptop", ["tabby cat", "laptop"]),
        ("cat; dog / horse", ["cat", "dog", "horse"]),
        ("a cat & a dog plus a horse", ["a cat", "a dog", "a horse"]),
        ("I see a cat, a dog.", ["a cat", "a dog"]),
        ("", []),
    ],
)
def test_split_answers(answer: str, items: list[str]) -> None:
    assert split_answers(answer) == items


def test_split_keeps_protected_names() -> None:
    items = split_answers("a mortar and pestle and a goldfish", protected=["mortar and pestle"])

    assert items == ["a mortar and pestle", "a goldfish"]


@pytest.mark.parametrize(
    ("answer", "index"),
    [
        ("B", 1), ("(B)", 1), ("B.", 1), ("b", 1), ("[c]", 2), ("B) lynx", 1), ("B: lynx", 1), ("B - lynx", 1),
        ("Answer: B", 1), ("The answer is B) lynx", 1), ("The answer is B because of the ear tufts", 1),
        ("Option C", 2), ("**B**", 1), ("a) tabby cat", 0), ("Answer: a", 0), ("E", 4),
    ],
)
def test_option_letters(answer: str, index: int) -> None:
    assert parse_option_letter(answer, 5) == index


@pytest.mark.parametrize("answer", ["F", "Z)", "a cat", "A cat", "I think it is a cat", "lynx", "Answer: A cat", "", "I"])
def test_option_letter_rejects(answer: str) -> None:
    assert parse_option_letter(answer, 5) is None


@pytest.mark.parametrize(
    ("word", "singular"),
    [("cats", "cat"), ("puppies", "puppy"), ("boxes", "box"), ("sunglasses", "sunglass"), ("wolves", "wolf"),
     ("geese", "goose"), ("buses", "bus"), ("bus", "bus"), ("mantis", "mantis"), ("cactus", "cactus"), ("dress", "dress")],
)
def test_singularize_word(word: str, singular: str) -> None:
    assert singularize_word(word) == singular


def test_singular_key_changes_last_word_only() -> None:
    assert singular_key("golden retrievers") == "golden retriever"
    assert singular_key("dogs sled") == "dogs sled"


@pytest.mark.parametrize("taxonomy_name", ["imagenet-1k", "imagenet-21k"])
def test_plain_name_path_agrees_with_parser(taxonomy_name: str) -> None:
    # The mapper's plain-name shortcut is only valid if parsing a bare class
    # name leaves its normalized key unchanged and never abstains.
    taxonomy = load_taxonomy(taxonomy_name)
    mismatches = []
    for cls in taxonomy.classes:
        for name in cls.all_names():
            key = normalize_text(name)
            parsed = parse_answer(name)
            if key and not is_non_answer_key(key) and (parsed.abstain or parsed.keys[0] != key):
                mismatches.append((cls.id, name, parsed.keys))

    assert mismatches == []
