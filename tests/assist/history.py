"""A crafted suggestion-and-decision history with hand-computed report figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from service.assist.confidence import uncertainty
from service.assist.schemas import SuggestedLabel, Suggestion
from service.assist.store import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = {"cat": ("n02123045", 281, "tabby cat"), "dog": ("n02099601", 207, "golden retriever")}
OTHERS = [("n03063599", 504, "coffee mug"), ("n04008634", 657, "missile")]

# (first-label confidence, first class, decisions in order: (kind, rank, label)).
# Entry 4 is decided twice, as a Label Studio update does: only the latest counts.
CASES: list[tuple[float, str, list[tuple[str, int | None, str | None]]]] = [
    (0.97, "cat", [("accepted", 1, "cat")]),
    (0.93, "cat", [("accepted", 1, "cat")]),
    (0.91, "dog", [("accepted", 1, "dog")]),
    (0.85, "dog", [("entered", None, "hyena"), ("accepted", 2, "coffee mug")]),
    (0.72, "cat", [("accepted", 1, "cat")]),
    (0.55, "dog", [("entered", None, "wolf")]),
    (0.45, "cat", [("rejected", None, None)]),
    (0.30, "cat", [("accepted", 3, "missile")]),
    (0.12, "dog", [("entered", None, "fox")]),
    (0.80, "cat", []),
]

# Figures computed by hand from CASES (9 decided, entry 10 undecided).
EXPECTED = {
    "suggestions": 10,
    "decided": 9,
    "accepted_at_1": 4,
    "accepted_at_k": 6,
    "entered": 2,
    "rejected": 1,
    "rank_counts": {1: 4, 2: 1, 3: 1},
    # Cumulative from the top: .97 1/1, .93 2/2, .91 3/3, .85 3/4 -> lowest t with >= 95% is .91.
    "threshold_95": (0.91, 3, 1.0),
    # .72 gives 4/5 = 80% and .55 gives 4/6 < 75%, so 75% stops at .72.
    "threshold_75": (0.72, 5, 0.8),
    # bucket index: (count, accepted at rank 1)
    "buckets": {9: (3, 3), 8: (1, 0), 7: (1, 1), 5: (1, 0), 4: (1, 0), 3: (1, 0), 1: (1, 0)},
    # class id: (count, acceptance@1, acceptance@k)
    "classes": {"n02123045": (5, 3 / 5, 4 / 5), "n02099601": (4, 1 / 4, 2 / 4)},
}


def make_suggestion(confidence: float, first: str, created_at: datetime, source: str = "api") -> Suggestion:
    """Build a three-label suggestion whose first label has this confidence."""
    class_id, index, name = CLASSES[first]
    rest = confidence / 4
    labels = [SuggestedLabel(rank=1, id=class_id, index=index, name=name, score=0.9, confidence=confidence)]
    for rank, (other_id, other_index, other_name) in enumerate(OTHERS, start=2):
        labels.append(SuggestedLabel(rank=rank, id=other_id, index=other_index, name=other_name,
                                     score=0.5, confidence=rest))
    return Suggestion(
        id=str(uuid.uuid4()),
        created_at=created_at,
        source=source,
        image_ref=f"image-{created_at:%H%M%S}.jpg",
        image_sha256="0" * 64,
        taxonomy="imagenet-1k",
        model="models/demo-llava",
        model_version="demo",
        raw_answer=name,
        labels=labels,
        uncertainty=uncertainty([label.confidence for label in labels]),
        request_id=uuid.uuid4().hex,
    )


def load_history(store: Store) -> list[Suggestion]:
    """Write CASES into the store and return the suggestions in order."""
    suggestions = []
    for position, (confidence, first, decisions) in enumerate(CASES):
        created_at = START + timedelta(minutes=position)
        suggestion = make_suggestion(confidence, first, created_at)
        store.add_suggestion(suggestion)
        for offset, (kind, rank, label) in enumerate(decisions, start=1):
            store.add_decision(
                suggestion.id,
                kind,
                rank=rank,
                class_id=suggestion.labels[rank - 1].id if rank else None,
                class_name=label,
                source="api",
                created_at=created_at + timedelta(seconds=offset),
            )
        suggestions.append(suggestion)
    return suggestions
