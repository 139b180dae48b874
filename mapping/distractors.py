"""Choice of wrong options (distractors) for multiple-choice prompts.

Three methods, all reproducible:
- "nearest": the classes whose display-name vectors are closest to the
  target's (hard distractors; deterministic, the seed is unused).
- "confusion": the classes ViT-3B confuses with the target most often in
  ImageNet-M, with ties broken by a seeded shuffle. When a class has fewer
  recorded confusions than requested, the rest come from "nearest".
- "random": a seeded uniform sample, the weak baseline that makes multiple
  choice too easy.
Classes that share a normalized name with the target (the two "crane"
classes) are never offered, because no answer could tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from mapping.index import ClassIndex
from mapping.taxonomy import Taxonomy, TaxonomyClass
from mapping.taxonomy_files import DATA_DIR

DistractorMethod = Literal["nearest", "confusion", "random"]
DISTRACTOR_METHODS: tuple[str, ...] = ("nearest", "confusion", "random")
CONFUSIONS_FILE = DATA_DIR / "imagenet-m-confusions.json"


@lru_cache(maxsize=4)
def load_confusions(path: Path = CONFUSIONS_FILE) -> dict[str, list[tuple[str, int]]]:
    """Return, per class id, the confused class ids with their counts (both directions)."""
    pairs = json.loads(path.read_text(encoding="utf-8"))
    partners: dict[str, dict[str, int]] = {}
    for first, second, count in pairs:
        for source, target in ((first, second), (second, first)):
            table = partners.setdefault(source, {})
            table[target] = table.get(target, 0) + int(count)
    return {source: sorted(table.items()) for source, table in partners.items()}


def same_name_classes(taxonomy: Taxonomy, target: TaxonomyClass) -> set[int]:
    """Return indexes of the target and of every class sharing one of its normalized names."""
    excluded = {target.index}
    for name in target.all_names():
        excluded.update(cls.index for cls in taxonomy.lookup_name(name))
    return excluded


def nearest_distractors(class_index: ClassIndex, target: TaxonomyClass, excluded: set[int], k: int) -> list[int]:
    """Rank classes by the cosine between their display-name vector and the target's.

    Display names are what a multiple-choice prompt shows, and comparing only
    them keeps rare synonyms ("Madagascar cat" for the ring-tailed lemur) from
    pulling in unrelated classes.
    """
    display_vectors = class_index.vectors[class_index.display_rows]
    scores = display_vectors @ display_vectors[target.index]
    scores[list(excluded)] = -np.inf
    # lexsort sorts by the last key first: score descending, then class index.
    order = np.lexsort((np.arange(class_index.num_classes), -scores))
    return [int(i) for i in order[:k] if np.isfinite(scores[i])]


def confusion_distractors(taxonomy: Taxonomy, target: TaxonomyClass, excluded: set[int], k: int, seed: int) -> list[int]:
    """Return up to k classes most often confused with the target, ties in a seeded order."""
    partners = load_confusions().get(target.id, [])
    known = [(taxonomy.by_id(partner).index, count) for partner, count in partners if partner in taxonomy]
    known = [(index, count) for index, count in known if index not in excluded]
    rng = np.random.default_rng(seed)
    tie_breaks = rng.permutation(len(known))
    ranked = sorted(zip(known, tie_breaks.tolist()), key=lambda item: (-item[0][1], item[1]))
    return [index for (index, _count), _tie in ranked[:k]]


def random_distractors(num_classes: int, excluded: set[int], k: int, seed: int) -> list[int]:
    pool = np.array([i for i in range(num_classes) if i not in excluded])
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(pool, size=k, replace=False)]


def choose_distractors(
    taxonomy: Taxonomy,
    class_index: ClassIndex,
    class_id: str,
    k: int,
    method: str = "nearest",
    seed: int = 0,
    candidates: Sequence[int] | None = None,
) -> list[str]:
    """Return k distractor class ids for `class_id`, never the class itself.

    `candidates`, when given, restricts the distractors to those class indexes.
    Raises ValueError for an unknown method, k < 0 or too few eligible classes.
    """
    if method not in DISTRACTOR_METHODS:
        raise ValueError(f"unknown distractor method {method!r}; use one of {', '.join(DISTRACTOR_METHODS)}")
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    target = taxonomy.by_id(class_id)
    excluded = same_name_classes(taxonomy, target)
    if candidates is not None:
        allowed = set(candidates)
        excluded |= {i for i in range(len(taxonomy)) if i not in allowed}
    available = len(taxonomy) - len(excluded)
    if k > available:
        raise ValueError(f"cannot choose {k} distractors for {class_id!r}: only {available} other classes are eligible")
    if k == 0:
        return []

    if method == "random":
        chosen = random_distractors(len(taxonomy), excluded, k, seed)
    elif method == "confusion":
        chosen = confusion_distractors(taxonomy, target, excluded, k, seed)
        if len(chosen) < k:
            chosen += nearest_distractors(class_index, target, excluded | set(chosen), k - len(chosen))
    else:
        chosen = nearest_distractors(class_index, target, excluded, k)
    return [taxonomy.by_index(i).id for i in chosen]
