"""Turn a labeler's choice into a stored decision: accepted at rank r, entered, or rejected."""

from __future__ import annotations

from dataclasses import dataclass

from service.assist.labels import LabelIndex
from service.assist.schemas import Suggestion


@dataclass(frozen=True)
class ResolvedDecision:
    decision: str
    rank: int | None
    class_id: str | None
    class_name: str | None


def _normalize(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


def reject() -> ResolvedDecision:
    """Return the decision that rejects the image."""
    return ResolvedDecision("rejected", None, None, None)


def accept_rank(suggestion: Suggestion, rank: int) -> ResolvedDecision:
    """Return the decision that accepts the suggestion at `rank`; raise ValueError past the last one."""
    if not 1 <= rank <= len(suggestion.labels):
        raise ValueError(f"rank {rank} is outside 1..{len(suggestion.labels)}, the suggestions shown")
    label = suggestion.labels[rank - 1]
    return ResolvedDecision("accepted", rank, label.id, label.name)


def decide_label(suggestion: Suggestion, text: str, index: LabelIndex | None) -> ResolvedDecision:
    """Resolve a label given by id or name: accepted when it matches a suggestion, else entered.

    An entered label keeps its text as the class name and gets the id of the
    taxonomy class it names, or None when it names none.
    """
    normalized = _normalize(text)
    for label in suggestion.labels:
        if normalized in (label.id.casefold(), _normalize(label.name)):
            return ResolvedDecision("accepted", label.rank, label.id, label.name)

    resolved = index.resolve(text) if index is not None else None
    if resolved is not None:
        for label in suggestion.labels:
            if label.id == resolved.id:
                return ResolvedDecision("accepted", label.rank, label.id, label.name)
        return ResolvedDecision("entered", None, resolved.id, resolved.name)
    return ResolvedDecision("entered", None, None, text.strip())
