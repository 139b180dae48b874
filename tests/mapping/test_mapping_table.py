"""Answer -> class table on the real ImageNet-1k taxonomy and the real MiniLM encoder.

Every row was checked by hand against the WordNet lemmas and CLIP names in
mapping/data/imagenet-1k.json. `ids` lists every expected label for name
matches (all classes sharing the name) and the expected first label for
embedding matches; it is empty for abstains and out-of-list answers.
"""

from __future__ import annotations

import pytest

from mapping import Mapper

TABBY = "n02123045"
GOLDEN_RETRIEVER = "n02099601"
GOLDFISH = "n01443537"
LAPTOP = "n03642806"
PIZZA = "n07873807"
ESPRESSO = "n07920052"
LYNX = "n02127052"
COUGAR = "n02125311"
PERSIAN = "n02123394"
EGYPTIAN_MAU = "n02124075"
TIGER_CAT = "n02123159"
COMPUTER_MOUSE = "n03793489"
CRANE_BIRD = "n02012849"
CONSTRUCTION_CRANE = "n03126707"
TENCH = "n01440764"

LONG_WALL = "A tabby cat sitting on a laptop, " + "and the background is a plain wall " * 300

# (answer, expected ids, method, flag) where flag is "", "ambiguous", "abstain" or "out_of_list".
MAP_CASES: list[tuple[str, tuple[str, ...], str, str]] = [
    # Display names (CLIP names).
    ("tabby cat", (TABBY,), "exact", ""),
    ("Golden Retriever", (GOLDEN_RETRIEVER,), "exact", ""),
    ("goldfish", (GOLDFISH,), "exact", ""),
    ("great white shark", ("n01484850",), "exact", ""),
    ("laptop computer", (LAPTOP,), "exact", ""),
    ("school bus", ("n04146614",), "exact", ""),
    ("three-toed sloth", ("n02457408",), "exact", ""),
    ("mortar and pestle", ("n03786901",), "exact", ""),
    ("Black and Tan Coonhound", ("n02089078",), "exact", ""),
    ("hot dog", ("n07697537",), "exact", ""),
    ("snow leopard", ("n02128757",), "exact", ""),
    ("iPod", ("n03584254",), "exact", ""),
    ("grey whale", ("n02066245",), "exact", ""),
    # WordNet lemmas and cleaned names as synonyms.
    ("tabby", (TABBY,), "synonym", ""),
    ("laptop", (LAPTOP,), "synonym", ""),
    ("Carassius auratus", (GOLDFISH,), "synonym", ""),
    ("white shark", ("n01484850",), "synonym", ""),
    ("mouse", (COMPUTER_MOUSE,), "synonym", ""),
    ("kite", ("n01608432",), "synonym", ""),
    ("shades", ("n04356056",), "synonym", ""),
    ("Tinca tinca", (TENCH,), "synonym", ""),
    ("jack-o'-lantern", ("n03590841",), "synonym", ""),
    ("hen-of-the-woods", ("n13052670",), "synonym", ""),
    ("gray whale", ("n02066245",), "synonym", ""),
    ("a hotdog", ("n07697537",), "synonym", ""),
    # Plurals and counts.
    ("tabby cats", (TABBY,), "exact", ""),
    ("golden retrievers", (GOLDEN_RETRIEVER,), "exact", ""),
    ("goldfishes", (GOLDFISH,), "exact", ""),
    ("timber wolves", ("n02114367",), "synonym", ""),
    ("pizzas", (PIZZA,), "exact", ""),
    ("school buses", ("n04146614",), "exact", ""),
    ("dishwashers", ("n03207941",), "exact", ""),
    ("geese", ("n01855672",), "exact", ""),
    ("two golden retrievers", (GOLDEN_RETRIEVER,), "exact", ""),
    ("a group of geese", ("n01855672",), "exact", ""),
    ("Three-Toed Sloths", ("n02457408",), "exact", ""),
    # Wrappers, markdown, quotes, trailing context.
    ("This image shows a tabby cat.", (TABBY,), "exact", ""),
    ("Answer: Golden retriever", (GOLDEN_RETRIEVER,), "exact", ""),
    ("**espresso**", (ESPRESSO,), "exact", ""),
    ('"pizza"', (PIZZA,), "exact", ""),
    ("\u201ctabby cat\u201d", (TABBY,), "exact", ""),
    ("`laptop`", (LAPTOP,), "synonym", ""),
    ("Tabby Cat!!!", (TABBY,), "exact", ""),
    ("The main object in the image is a laptop.", (LAPTOP,), "synonym", ""),
    ("It is a goldfish.", (GOLDFISH,), "exact", ""),
    ("I think it's a lynx", (LYNX,), "exact", ""),
    ("# Answer: pizza", (PIZZA,), "exact", ""),
    ("Final answer: espresso", (ESPRESSO,), "exact", ""),
    ("A tabby cat sitting on a laptop.", (TABBY,), "exact", ""),
    ("a golden retriever playing in the snow", (GOLDEN_RETRIEVER,), "exact", ""),
    ("an airliner in the sky", ("n02690373",), "exact", ""),
    ("laptop on a desk", (LAPTOP,), "synonym", ""),
    ("tabby\nThe cat is lying on a keyboard.", (TABBY,), "synonym", ""),
    # Names shared by several classes stay visible.
    ("crane", (CRANE_BIRD, CONSTRUCTION_CRANE), "synonym", "ambiguous"),
    ("cranes", (CRANE_BIRD, CONSTRUCTION_CRANE), "synonym", "ambiguous"),
    ("sunglasses", ("n04355933", "n04356056"), "exact", "ambiguous"),
    ("missile", ("n03773504", "n04008634"), "exact", "ambiguous"),
    ("maillot", ("n03710637", "n03710721"), "synonym", "ambiguous"),
    ("panda", ("n02509815", "n02510455"), "synonym", "ambiguous"),
    ("polecat", ("n02443114", "n02445715"), "synonym", "ambiguous"),
    # Refusals and non-answers.
    ("", (), "none", "abstain"),
    ("   ", (), "none", "abstain"),
    ("I don't know", (), "none", "abstain"),
    ("I can't tell.", (), "none", "abstain"),
    ("unknown", (), "none", "abstain"),
    ("N/A", (), "none", "abstain"),
    ("Sorry, I cannot identify the object in this image.", (), "none", "abstain"),
    ("As an AI, I cannot see images.", (), "none", "abstain"),
    ("I'm not sure, but it looks like a tabby cat.", (TABBY,), "exact", ""),
    # Typos and descriptions go through the embedding.
    ("tabby cta", (TABBY,), "embedding", ""),
    ("golden retreiver", (GOLDEN_RETRIEVER,), "embedding", ""),
    ("a red sports car", ("n04285008",), "embedding", ""),
    ("fluffy persian kitten", (PERSIAN,), "embedding", ""),
    ("The image depicts an old steam locomotive.", ("n04310018",), "embedding", ""),
    ("a volcano erupting at night", ("n09472597",), "embedding", ""),
    ("bike", ("n03792782",), "embedding", ""),
    # Non-English words: accents fold, loanword class names match, others fall out of the list.
    ("consommé", ("n07584110",), "exact", ""),
    ("Weimaraner", ("n02092339",), "exact", ""),
    ("papillon", ("n02086910",), "exact", ""),
    ("Kuvasz", ("n02104029",), "exact", ""),
    ("Katze", (), "none", "out_of_list"),
    ("gâteau", (), "none", "out_of_list"),
    # Nonsense and 10,000-character answers.
    ("quantum chromodynamics", (), "none", "out_of_list"),
    ("a blank white page", (), "none", "out_of_list"),
    ("x" * 10_000, (), "none", "out_of_list"),
    (LONG_WALL, (TABBY,), "exact", ""),
]


@pytest.mark.parametrize(("answer", "ids", "method", "flag"), MAP_CASES, ids=[case[0][:40] or "empty" for case in MAP_CASES])
def test_map_table(mapper_1k: Mapper, answer: str, ids: tuple[str, ...], method: str, flag: str) -> None:
    result = mapper_1k.map(answer, top_k=5)

    assert result.method == method
    assert result.abstain == (flag == "abstain")
    assert result.out_of_list == (flag == "out_of_list")
    assert result.ambiguous == (flag == "ambiguous")
    assert result.answer == answer
    if method in ("exact", "synonym"):
        assert tuple(label.id for label in result.labels) == ids
        assert result.similarity == 1.0
    elif method == "embedding":
        assert result.labels[0].id == ids[0]
        assert result.similarity >= 0.5
        assert result.margin == pytest.approx(result.labels[0].score - result.labels[1].score)
    elif flag == "abstain":
        assert result.labels == []
    else:
        # Out of list: the nearest classes stay visible, under the threshold.
        assert result.similarity < 0.5
        assert len(result.labels) == 5


def test_map_table_size() -> None:
    assert len(MAP_CASES) >= 80


OPTIONS = [LYNX, TABBY, COUGAR, PERSIAN, EGYPTIAN_MAU]
OPTION_CASES: list[tuple[str, str | None, str]] = [
    ("B", TABBY, "option"),
    ("(C)", COUGAR, "option"),
    ("Answer: D", PERSIAN, "option"),
    ("The answer is A) lynx", LYNX, "option"),
    ("e.", EGYPTIAN_MAU, "option"),
    ("**B**", TABBY, "option"),
    ("Option C", COUGAR, "option"),
    ("B: tabby cat", TABBY, "option"),
    ("cougar", COUGAR, "option"),
    ("Egyptian cat", EGYPTIAN_MAU, "option"),
    ("a Persian cat.", PERSIAN, "option"),
    ("F", None, "out_of_list"),
    ("a horse", None, "out_of_list"),
    ("I don't know", None, "abstain"),
]


@pytest.mark.parametrize(("answer", "expected", "outcome"), OPTION_CASES, ids=[case[0] for case in OPTION_CASES])
def test_map_option_table(mapper_1k: Mapper, answer: str, expected: str | None, outcome: str) -> None:
    result = mapper_1k.map_option(answer, OPTIONS)

    assert result.abstain == (outcome == "abstain")
    assert result.out_of_list == (outcome == "out_of_list")
    if expected is None:
        assert result.method == "none"
    else:
        assert result.method == "option"
        assert [label.id for label in result.labels] == [expected]


MULTILABEL_CASES: list[tuple[str, list[str]]] = [
    ("a tabby cat and a golden retriever", [TABBY, GOLDEN_RETRIEVER]),
    ("laptop, computer mouse, espresso", [LAPTOP, COMPUTER_MOUSE, ESPRESSO]),
    ("- pizza\n- espresso", [PIZZA, ESPRESSO]),
    ("1. goldfish\n2. great white shark", [GOLDFISH, "n01484850"]),
    ("mortar and pestle", ["n03786901"]),
    ("I see a laptop, a mouse and a tabby cat.", [LAPTOP, COMPUTER_MOUSE, TABBY]),
    ("goldfish; goldfish; tench", [GOLDFISH, TENCH]),
]


@pytest.mark.parametrize(("answer", "expected"), MULTILABEL_CASES, ids=[case[0][:40] for case in MULTILABEL_CASES])
def test_map_multilabel_table(mapper_1k: Mapper, answer: str, expected: list[str]) -> None:
    results = mapper_1k.map_multilabel(answer, top_k=3)

    assert [result.labels[0].id for result in results] == expected
    assert all(result.method in ("exact", "synonym") for result in results)


def test_multilabel_refusal_gives_one_abstain(mapper_1k: Mapper) -> None:
    results = mapper_1k.map_multilabel("nothing")

    assert len(results) == 1
    assert results[0].abstain
    assert results[0].labels == []


def test_candidates_keep_allowed_exact_match(mapper_1k: Mapper) -> None:
    result = mapper_1k.map("tabby cat", candidates=[TABBY, TIGER_CAT])

    assert result.method == "exact"
    assert [label.id for label in result.labels] == [TABBY]


def test_candidates_reject_class_outside(mapper_1k: Mapper) -> None:
    result = mapper_1k.map("Persian cat", candidates=[TABBY, TIGER_CAT])

    assert result.out_of_list
    assert result.method == "none"
    assert {label.id for label in result.labels} <= {TABBY, TIGER_CAT}


def test_candidates_resolve_shared_name(mapper_1k: Mapper) -> None:
    result = mapper_1k.map("crane", candidates=[CRANE_BIRD, TENCH])

    assert [label.id for label in result.labels] == [CRANE_BIRD]
    assert not result.ambiguous


def test_candidates_restrict_embedding(mapper_1k: Mapper) -> None:
    result = mapper_1k.map("fluffy kitten with stripes", candidates=["tabby cat", "tiger cat", "Persian cat"], top_k=5)

    assert result.method == "embedding"
    assert {label.id for label in result.labels} == {TABBY, TIGER_CAT, PERSIAN}


def test_map_batch_matches_single_maps(mapper_1k: Mapper) -> None:
    answers = [case[0] for case in MAP_CASES[::3]]

    batch = mapper_1k.map_batch(answers, top_k=3)
    single = [mapper_1k.map(answer, top_k=3) for answer in answers]

    assert [result.to_dict() for result in batch] == [result.to_dict() for result in single]
