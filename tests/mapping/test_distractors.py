"""Distractor choice: nearest, confusion and random methods on ImageNet-1k."""

from __future__ import annotations

import pytest

from mapping import Mapper
from mapping.distractors import load_confusions

TABBY = "n02123045"
CRANE_BIRD = "n02012849"
CONSTRUCTION_CRANE = "n03126707"


@pytest.mark.parametrize("method", ["nearest", "confusion", "random"])
def test_distractors_exclude_target(mapper_1k: Mapper, method: str) -> None:
    chosen = mapper_1k.distractors(TABBY, 8, method=method, seed=3)

    assert len(chosen) == 8
    assert len(set(chosen)) == 8
    assert TABBY not in chosen
    assert all(class_id in mapper_1k.taxonomy for class_id in chosen)


@pytest.mark.parametrize("method", ["nearest", "confusion", "random"])
def test_distractors_reproducible(mapper_1k: Mapper, method: str) -> None:
    assert mapper_1k.distractors(TABBY, 5, method=method, seed=7) == mapper_1k.distractors(TABBY, 5, method=method, seed=7)


def test_random_depends_on_seed(mapper_1k: Mapper) -> None:
    assert mapper_1k.distractors(TABBY, 5, method="random", seed=1) != mapper_1k.distractors(TABBY, 5, method="random", seed=2)


def test_nearest_are_other_cats(mapper_1k: Mapper) -> None:
    chosen = mapper_1k.distractors(TABBY, 3, method="nearest")
    cats = {"n02123159", "n02123394", "n02123597", "n02124075"}

    assert set(chosen) <= cats


def test_confusion_uses_imagenet_m_pairs(mapper_1k: Mapper) -> None:
    partners = dict(load_confusions()[TABBY])
    chosen = mapper_1k.distractors(TABBY, 1, method="confusion")

    assert chosen[0] in partners
    assert partners[chosen[0]] == max(partners.values())


def test_confusion_fills_with_nearest(mapper_1k: Mapper) -> None:
    known = [partner for partner, _ in load_confusions().get(TABBY, [])]
    chosen = mapper_1k.distractors(TABBY, len(known) + 3, method="confusion")

    assert set(known) <= set(chosen[: len(known)])
    assert len(chosen) == len(known) + 3


def test_same_name_class_never_offered(mapper_1k: Mapper) -> None:
    for method in ("nearest", "confusion", "random"):
        assert CONSTRUCTION_CRANE not in mapper_1k.distractors(CRANE_BIRD, 50, method=method)


def test_distractors_within_candidates(mapper_1k: Mapper) -> None:
    candidates = ["n02123159", "n02123394", "n01440764"]

    assert sorted(mapper_1k.distractors(TABBY, 3, method="random", candidates=candidates)) == sorted(candidates)


def test_distractor_errors(mapper_1k: Mapper) -> None:
    with pytest.raises(ValueError, match="unknown distractor method"):
        mapper_1k.distractors(TABBY, 3, method="hardest")
    with pytest.raises(ValueError, match="only 998 other classes"):
        mapper_1k.distractors(CRANE_BIRD, 999)
    with pytest.raises(KeyError, match="n99999999"):
        mapper_1k.distractors("n99999999", 3)
    assert mapper_1k.distractors(TABBY, 0) == []


def test_nearest_classes_excludes(mapper_1k: Mapper) -> None:
    nearest = mapper_1k.nearest_classes("tabby cat", 4, exclude=[TABBY])

    assert len(nearest) == 4
    assert TABBY not in [label.id for label in nearest]
    assert [label.score for label in nearest] == sorted((label.score for label in nearest), reverse=True)


def test_resolve_candidates(mapper_1k: Mapper) -> None:
    assert mapper_1k.resolve_candidates([TABBY, "goldfish", "crane", TABBY]) == [TABBY, "n01443537", CRANE_BIRD, CONSTRUCTION_CRANE]
    with pytest.raises(ValueError, match="unknown candidate 'unicorn'"):
        mapper_1k.resolve_candidates(["goldfish", "unicorn", "dragon"])
