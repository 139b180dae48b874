"""Properties of build_report on random histories, against direct recomputation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.assist.report import build_report
from service.assist.store import HistoryRow

DECISIONS = st.sampled_from([("accepted", 1), ("accepted", 2), ("accepted", 3), ("entered", None),
                             ("rejected", None), (None, None)])


@st.composite
def histories(draw) -> list[HistoryRow]:
    rows = []
    for position in range(draw(st.integers(0, 40))):
        decision, rank = draw(DECISIONS)
        rows.append(
            HistoryRow(
                suggestion_id=str(position),
                class_id=draw(st.sampled_from(["a", "b", "c"])),
                class_name=None,
                # Two decimals, so equal confidences occur and ties are exercised.
                confidence=draw(st.integers(0, 100)) / 100,
                num_labels=3,
                decision=decision,
                rank=rank,
            )
        )
    return rows


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from([0.5, 0.8, 0.95, 1.0]))
def test_report_matches_recomputation(rows: list[HistoryRow], target: float) -> None:
    report = build_report(rows, target=target)
    decided = [row for row in rows if row.decision is not None]
    accepted_1 = [row for row in decided if row.decision == "accepted" and row.rank == 1]

    assert report.decided == len(decided)
    assert report.accepted_at_1 == len(accepted_1)
    assert report.accepted_at_k == sum(row.decision == "accepted" for row in decided)
    assert sum(bucket.count for bucket in report.buckets) == len(decided)
    assert sum(bucket.accepted_at_1 for bucket in report.buckets) == len(accepted_1)
    assert sum(item.count for item in report.classes) == len(decided)

    def rate_at(cut: float) -> float:
        above = [row for row in decided if row.confidence >= cut]
        return sum(row.decision == "accepted" and row.rank == 1 for row in above) / len(above)

    cuts = sorted({row.confidence for row in decided})
    if report.threshold is None:
        assert all(rate_at(cut) < target for cut in cuts)
    else:
        assert rate_at(report.threshold) >= target
        assert report.threshold_count == sum(row.confidence >= report.threshold for row in decided)
        # No lower cut reaches the target, so the threshold is the lowest one.
        assert all(rate_at(cut) < target for cut in cuts if cut < report.threshold)
