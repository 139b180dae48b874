"""Result types returned by the mapper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MappingMethod = Literal["exact", "synonym", "embedding", "option", "none"]


@dataclass(frozen=True, slots=True)
class LabelScore:
    """A ranked class: id, taxonomy index, display name and score (cosine, or 1.0 for a name match)."""

    id: str
    index: int
    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "name": self.name, "score": round(self.score, 6)}


# Not frozen: frozen dataclasses set every field through object.__setattr__,
# which triples construction time on the name-match path.
@dataclass(slots=True)
class MappingResult:
    """How one answer maps to taxonomy classes.

    - `method` "exact" or "synonym": the answer equals a display name or a
      synonym; every class sharing that name is listed with score 1.0.
    - `method` "embedding": nearest classes by cosine similarity, best first.
    - `method` "option": a multiple-choice letter or the text of one option.
    - `method` "none": nothing was mapped. Either `abstain` is True (refusal,
      non-answer, empty text; `labels` is empty) or `out_of_list` is True (the
      best similarity is under the threshold, or the answer names a class
      outside the allowed candidates). Out-of-list results still list the
      nearest allowed classes in `labels` for transparency, so callers must
      check `out_of_list` before treating `labels[0]` as a prediction.

    `margin` is the score of the first label minus the second (0.0 with fewer
    than two labels). `similarity` is the top cosine, 1.0 for name matches and
    letters. `ambiguous` is True when several classes tie at the top, e.g. a
    name shared by two classes ("crane").
    """

    answer: str
    normalized: str
    labels: list[LabelScore] = field(default_factory=list)
    method: MappingMethod = "none"
    margin: float = 0.0
    similarity: float = 0.0
    out_of_list: bool = False
    abstain: bool = False
    ambiguous: bool = False

    @property
    def top(self) -> LabelScore | None:
        """Return the first label when the answer was mapped, None when abstained or out of list."""
        if self.abstain or self.out_of_list or not self.labels:
            return None
        return self.labels[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "normalized": self.normalized,
            "labels": [label.to_dict() for label in self.labels],
            "method": self.method,
            "margin": round(self.margin, 6),
            "similarity": round(self.similarity, 6),
            "out_of_list": self.out_of_list,
            "abstain": self.abstain,
            "ambiguous": self.ambiguous,
        }
