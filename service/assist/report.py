"""Acceptance figures over the stored history of suggestions and decisions.

Each suggestion counts once, with its latest decision; undecided suggestions
are left out. Over the decided ones:

- acceptance@1: share where the labeler accepted the first suggestion;
- acceptance@k: share where the labeler accepted any of the k suggestions
  shown (k is per suggestion, usually the configured top_k);
- rejected images stay in the denominator, because the suggestion did not help
  label them either.

The calibration threshold is the lowest first-label confidence t such that,
among decided suggestions with confidence >= t, at least `target` (95% by
default) were accepted at rank 1. It is None when no such t exists.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from pydantic import BaseModel

from service.assist.store import HistoryRow


class BucketStats(BaseModel):
    """Decided suggestions whose first-label confidence is in [lower, upper), or [lower, 1] for the last."""

    lower: float
    upper: float
    count: int
    accepted_at_1: int
    acceptance_at_1: float | None


class ClassStats(BaseModel):
    """Decided suggestions whose first label is this class."""

    class_id: str
    name: str
    count: int
    acceptance_at_1: float
    acceptance_at_k: float


class AcceptanceReport(BaseModel):
    suggestions: int
    decided: int
    accepted_at_1: int
    accepted_at_k: int
    entered: int
    rejected: int
    acceptance_at_1: float | None
    acceptance_at_k: float | None
    # Largest number of suggestions shown for one image.
    max_k: int
    # Accepted decisions by rank of the accepted suggestion.
    rank_counts: dict[int, int]
    buckets: list[BucketStats]
    target: float
    threshold: float | None
    # Decided suggestions at or above the threshold, and their acceptance@1.
    threshold_count: int
    threshold_acceptance: float | None
    classes: list[ClassStats]


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _is_accepted_at_1(row: HistoryRow) -> bool:
    return row.decision == "accepted" and row.rank == 1


def _buckets(decided: list[HistoryRow], num_buckets: int) -> list[BucketStats]:
    counts = [0] * num_buckets
    accepted = [0] * num_buckets
    for row in decided:
        # Confidence 1.0 belongs to the last bucket, which therefore includes its upper edge.
        index = min(int(math.floor(row.confidence * num_buckets)), num_buckets - 1)
        counts[index] += 1
        accepted[index] += _is_accepted_at_1(row)

    return [
        BucketStats(
            lower=index / num_buckets,
            upper=(index + 1) / num_buckets,
            count=counts[index],
            accepted_at_1=accepted[index],
            acceptance_at_1=_rate(accepted[index], counts[index]),
        )
        for index in range(num_buckets)
    ]


def _threshold(decided: list[HistoryRow], target: float) -> tuple[float | None, int, float | None]:
    ranked = sorted(decided, key=lambda row: row.confidence, reverse=True)
    best: tuple[float | None, int, float | None] = (None, 0, None)
    accepted = 0
    for position, row in enumerate(ranked):
        accepted += _is_accepted_at_1(row)
        # Only a cut between distinct confidences is a threshold: equal values go together.
        if position + 1 < len(ranked) and ranked[position + 1].confidence == row.confidence:
            continue
        count = position + 1
        if accepted / count >= target:
            best = (row.confidence, count, accepted / count)
    return best


def _classes(decided: list[HistoryRow]) -> list[ClassStats]:
    groups: dict[str, list[HistoryRow]] = defaultdict(list)
    names: dict[str, str] = {}
    for row in decided:
        if row.class_id is None:
            continue
        groups[row.class_id].append(row)
        names[row.class_id] = row.class_name or row.class_id

    stats = []
    for class_id, rows in groups.items():
        at_1 = sum(_is_accepted_at_1(row) for row in rows)
        at_k = sum(row.decision == "accepted" for row in rows)
        stats.append(
            ClassStats(
                class_id=class_id,
                name=names[class_id],
                count=len(rows),
                acceptance_at_1=at_1 / len(rows),
                acceptance_at_k=at_k / len(rows),
            )
        )
    stats.sort(key=lambda item: (-item.count, item.class_id))
    return stats


def build_report(history: Iterable[HistoryRow], target: float = 0.95, num_buckets: int = 10) -> AcceptanceReport:
    """Compute acceptance@1, acceptance@k, confidence buckets, the calibration threshold and per-class rates."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target acceptance must be in (0, 1], got {target}")
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")

    rows = list(history)
    decided = [row for row in rows if row.decision is not None]
    accepted_at_1 = sum(_is_accepted_at_1(row) for row in decided)
    accepted_at_k = sum(row.decision == "accepted" for row in decided)

    rank_counts: dict[int, int] = defaultdict(int)
    for row in decided:
        if row.decision == "accepted" and row.rank is not None:
            rank_counts[row.rank] += 1

    threshold, threshold_count, threshold_acceptance = _threshold(decided, target)
    return AcceptanceReport(
        suggestions=len(rows),
        decided=len(decided),
        accepted_at_1=accepted_at_1,
        accepted_at_k=accepted_at_k,
        entered=sum(row.decision == "entered" for row in decided),
        rejected=sum(row.decision == "rejected" for row in decided),
        acceptance_at_1=_rate(accepted_at_1, len(decided)),
        acceptance_at_k=_rate(accepted_at_k, len(decided)),
        max_k=max((row.num_labels for row in rows), default=0),
        rank_counts=dict(sorted(rank_counts.items())),
        buckets=_buckets(decided, num_buckets),
        target=target,
        threshold=threshold,
        threshold_count=threshold_count,
        threshold_acceptance=threshold_acceptance,
        classes=_classes(decided),
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_report(report: AcceptanceReport, max_classes: int = 20) -> str:
    """Render the report as plain text for a terminal."""
    lines = [
        f"suggestions: {report.suggestions}   decided: {report.decided}   "
        f"entered: {report.entered}   rejected: {report.rejected}",
        f"acceptance@1: {_percent(report.acceptance_at_1)} ({report.accepted_at_1}/{report.decided})",
        f"acceptance@k: {_percent(report.acceptance_at_k)} ({report.accepted_at_k}/{report.decided}, k <= {report.max_k})",
    ]
    if report.rank_counts:
        ranks = ", ".join(f"{rank}: {count}" for rank, count in report.rank_counts.items())
        lines.append(f"accepted by rank: {ranks}")

    if report.threshold is None:
        lines.append(f"calibration: no confidence threshold reaches {_percent(report.target)} acceptance@1")
    else:
        lines.append(
            f"calibration: confidence >= {report.threshold:.3f} is accepted at rank 1 "
            f"{_percent(report.threshold_acceptance)} of the time ({report.threshold_count} suggestions, "
            f"target {_percent(report.target)})"
        )

    lines.append("")
    lines.append("confidence      count  acceptance@1")
    for position, bucket in enumerate(report.buckets):
        closing = "]" if position == len(report.buckets) - 1 else ")"
        lines.append(
            f"[{bucket.lower:.2f}, {bucket.upper:.2f}{closing}  {bucket.count:5d}  {_percent(bucket.acceptance_at_1):>12}"
        )

    if report.classes:
        lines.append("")
        lines.append("class (first suggestion)                  count  acceptance@1  acceptance@k")
        for item in report.classes[:max_classes]:
            label = f"{item.class_id} {item.name}"[:40]
            lines.append(
                f"{label:<40}  {item.count:5d}  {_percent(item.acceptance_at_1):>12}  {_percent(item.acceptance_at_k):>12}"
            )
        if len(report.classes) > max_classes:
            lines.append(f"... {len(report.classes) - max_classes} more classes (use --json for all)")
    return "\n".join(lines)
