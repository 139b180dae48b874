"""Confidence per suggested label and an uncertainty score per image.

For the top-k labels of one answer with mapping scores s_1 >= ... >= s_k
(cosine similarity between the answer and a class name, 1.0 for an exact or
synonym match), the confidence of label i is

    c_i = clip(s_i, 0, 1) * softmax(s / T)_i        with T = SOFTMAX_TEMPERATURE.

The first factor is how well the answer matches that class at all, the second
is how much of the evidence it takes from the other suggestions. With two
labels the share of the first is sigmoid(margin / T), where margin = s_1 - s_2,
so a first label with the same score but a smaller margin gets less
confidence. An abstaining answer gives every label confidence 0.

The optional confirming pass asks the model to pick one of the k labels as a
multiple-choice question. Each confidence then moves halfway
(CONFIRMATION_WEIGHT) towards 1 for the picked label and towards 0 for the
others, and the labels are re-ranked by the new confidence:

    c_i' = (1 - w) * c_i + w * [i is the picked label].

The uncertainty of an image is 1 - (c_1 - c_2) over its ranked confidences
(c_2 = 0 for a single label). It is near 0 when one label is confident and
clearly ahead, and near 1 when the best label is weak or tied, so sorting by
uncertainty, descending, puts the hardest images first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SOFTMAX_TEMPERATURE = 0.05
CONFIRMATION_WEIGHT = 0.5


def label_confidences(scores: Sequence[float], abstain: bool = False) -> list[float]:
    """Compute the confidence of each label from the mapping scores of one answer."""
    if not scores or abstain:
        return [0.0 for _ in scores]

    # Shifting by the max score keeps exp() in range without changing the softmax.
    top = max(scores)
    weights = [math.exp((score - top) / SOFTMAX_TEMPERATURE) for score in scores]
    total = sum(weights)

    confidences = []
    for score, weight in zip(scores, weights):
        match = min(max(score, 0.0), 1.0)
        confidences.append(match * weight / total)
    return confidences


def confirm_confidences(confidences: Sequence[float], picked: int | None) -> list[float]:
    """Move confidences towards the label at index `picked` of the confirming pass.

    `picked` None (the pass failed to pick one of the labels) leaves them unchanged.
    """
    if picked is None:
        return list(confidences)
    if not 0 <= picked < len(confidences):
        raise ValueError(f"picked label index {picked} is outside 0..{len(confidences) - 1}")

    weight = CONFIRMATION_WEIGHT
    return [(1.0 - weight) * value + (weight if index == picked else 0.0) for index, value in enumerate(confidences)]


def uncertainty(ranked_confidences: Sequence[float]) -> float:
    """Return 1 - (c_1 - c_2) for confidences sorted in descending order; 1.0 for none."""
    if not ranked_confidences:
        return 1.0
    first = ranked_confidences[0]
    second = ranked_confidences[1] if len(ranked_confidences) > 1 else 0.0
    return min(max(1.0 - (first - second), 0.0), 1.0)
