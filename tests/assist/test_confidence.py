from __future__ import annotations

import math

import pytest

from service.assist.confidence import (
    CONFIRMATION_WEIGHT,
    SOFTMAX_TEMPERATURE,
    confirm_confidences,
    label_confidences,
    uncertainty,
)


def test_two_labels_share_is_sigmoid_of_margin() -> None:
    scores = [0.9, 0.8]
    confidences = label_confidences(scores)
    share = 1 / (1 + math.exp(-(scores[0] - scores[1]) / SOFTMAX_TEMPERATURE))
    assert confidences[0] == pytest.approx(0.9 * share)
    assert confidences[1] == pytest.approx(0.8 * (1 - share))


def test_smaller_margin_lowers_confidence() -> None:
    clear = label_confidences([0.9, 0.5])[0]
    close = label_confidences([0.9, 0.88])[0]
    assert clear > close


def test_exact_match_alone_is_certain() -> None:
    assert label_confidences([1.0]) == [pytest.approx(1.0)]
    assert uncertainty([1.0]) == pytest.approx(0.0)


def test_abstain_and_negative_scores() -> None:
    assert label_confidences([0.9, 0.2], abstain=True) == [0.0, 0.0]
    assert label_confidences([-0.3])[0] == 0.0
    assert label_confidences([]) == []


def test_confirmation_moves_towards_pick() -> None:
    confidences = [0.6, 0.3, 0.1]
    agreed = confirm_confidences(confidences, 0)
    assert agreed[0] == pytest.approx(0.5 * 0.6 + CONFIRMATION_WEIGHT)
    assert agreed[1] == pytest.approx(0.15)

    disagreed = confirm_confidences(confidences, 1)
    assert disagreed[1] > disagreed[0]
    assert confirm_confidences(confidences, None) == confidences
    with pytest.raises(ValueError):
        confirm_confidences(confidences, 3)


def test_uncertainty_orders_hard_images_first() -> None:
    easy = uncertainty([0.95, 0.02])
    tied = uncertainty([0.45, 0.44])
    weak = uncertainty([0.2, 0.05])
    assert easy < weak < tied
    assert uncertainty([]) == 1.0
