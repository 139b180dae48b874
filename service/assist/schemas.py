"""Pydantic models of the annotation assist API and of the stored records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Origin of a suggestion or decision: the /assist API, the review page, or a
# Label Studio project that uses this service as its ML backend.
Source = Literal["api", "review", "labelstudio"]

# accepted: the labeler took the suggestion at `rank` (1 = the first one).
# entered: the labeler gave a label that was not among the suggestions.
# rejected: the labeler rejected the image (no class applies, unusable image).
DecisionKind = Literal["accepted", "entered", "rejected"]


class SuggestedLabel(BaseModel):
    rank: int = Field(ge=1)
    id: str
    index: int
    name: str
    # Mapping score of the answer against this class (cosine similarity, 1.0 for exact matches).
    score: float
    confidence: float = Field(ge=0.0, le=1.0)


class Suggestion(BaseModel):
    id: str
    created_at: datetime
    source: Source
    # File name in the review folder, task image URL, or the caller's own reference.
    image_ref: str | None = None
    image_sha256: str
    # Label Studio task id, for suggestions made by a /predict call.
    task_id: str | None = None
    project_id: str | None = None
    taxonomy: str
    model: str
    model_version: str
    raw_answer: str
    labels: list[SuggestedLabel]
    uncertainty: float = Field(ge=0.0, le=1.0)
    # None: no confirming pass; True: it picked the first label; False: it picked another or none.
    confirmed: bool | None = None
    request_id: str

    @property
    def confidence(self) -> float:
        """Confidence of the first label, 0.0 when there is none."""
        return self.labels[0].confidence if self.labels else 0.0


class DecisionRequest(BaseModel):
    """A labeler's decision on one suggestion, as the review page and API clients send it.

    Give exactly one of: `rank` (accept that suggestion), `label` (a class id or
    name, counted as accepted when it matches a suggestion), or `reject`.
    """

    model_config = ConfigDict(extra="forbid")

    suggestion_id: str
    rank: int | None = Field(None, ge=1)
    label: str | None = Field(None, min_length=1, max_length=300)
    reject: bool = False
    annotator: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _exactly_one_choice(self) -> DecisionRequest:
        choices = sum([self.rank is not None, self.label is not None, self.reject])
        if choices != 1:
            raise ValueError("give exactly one of rank, label or reject=true")
        return self


class Decision(BaseModel):
    id: int
    suggestion_id: str
    created_at: datetime
    decision: DecisionKind
    # Rank of the accepted suggestion; None for entered and rejected.
    rank: int | None = None
    # The chosen class; None for rejected, and class_id is None for an entered
    # label that matches no class of the taxonomy.
    class_id: str | None = None
    class_name: str | None = None
    source: Source
    annotator: str | None = None
    # Label Studio annotation id for decisions from the webhook.
    external_id: str | None = None


class QueueItem(BaseModel):
    """One image of the review folder with its latest suggestion and decision."""

    name: str
    suggestion: Suggestion | None = None
    decision: Decision | None = None


class Queue(BaseModel):
    items: list[QueueItem]
    decided: int
    total: int


class LabelOption(BaseModel):
    id: str
    name: str
