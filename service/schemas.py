"""Pydantic models at the API edge, shared by HTTP, gRPC and the clients."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Protocol = Literal["open", "closed", "choice", "multilabel", "constrained", "score"]
PROTOCOLS: tuple[str, ...] = ("open", "closed", "choice", "multilabel", "constrained", "score")

# How the answer became class ids: mapping methods from `mapping/`, plus the
# backend-side ones (constrained decoding, likelihood scoring, a supervised head).
Method = Literal["exact", "synonym", "embedding", "option", "constrained", "score", "supervised", "none"]


class ClassifyParams(BaseModel):
    """Per-request settings; the same fields as HTTP form fields and gRPC message fields."""

    model_config = ConfigDict(extra="forbid")

    protocol: Protocol = "open"
    # Built-in taxonomy name or one listed by GET /taxonomies; None = the service default.
    taxonomy: str | None = None
    # Class ids or names of the taxonomy to restrict the answer to.
    candidates: list[str] | None = None
    top_k: int = Field(5, ge=1)
    seed: int = 0
    # Options shown in the `choice` protocol when they come from the mapper.
    num_options: int = Field(5, ge=2, le=26)
    max_new_tokens: int | None = Field(None, ge=1, le=512)


class Label(BaseModel):
    id: str
    index: int
    name: str
    score: float


class StageTimings(BaseModel):
    """Milliseconds spent in each stage of one request."""

    # Decoding plus the backend's per-image preparation (resizing to the
    # model's input size); preprocess_ms is the processor's share of the batch.
    decode_ms: float = 0.0
    queue_ms: float = 0.0
    preprocess_ms: float = 0.0
    generate_ms: float = 0.0
    map_ms: float = 0.0
    total_ms: float = 0.0


class ObjectResult(BaseModel):
    """One object named in a multilabel answer, mapped on its own."""

    answer: str
    labels: list[Label]
    method: Method
    margin: float
    out_of_list: bool


class ClassifyResult(BaseModel):
    request_id: str
    labels: list[Label]
    raw_answer: str
    method: Method
    margin: float
    similarity: float = 0.0
    out_of_list: bool
    abstain: bool
    ambiguous: bool = False
    protocol: Protocol
    prompt_id: str
    model: str
    taxonomy: str
    timings: StageTimings
    # choice: the options offered, in the order shown; first_answer is the
    # free answer of the two-stage mode that chose them.
    options: list[Label] | None = None
    first_answer: str | None = None
    # multilabel: one entry per object the model listed.
    objects: list[ObjectResult] | None = None
    generated_tokens: int = 0
    prompt_tokens: int = 0


class BatchClassifyResult(BaseModel):
    results: list[ClassifyResult]


class TaxonomyInfo(BaseModel):
    name: str
    num_classes: int
    hash: str
    default: bool
    # True when every class name fits the model's context in a `closed` prompt.
    fits_closed_prompt: bool


class TaxonomyList(BaseModel):
    taxonomies: list[TaxonomyInfo]


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx response."""

    error: str
    # The request field the error is about, e.g. "image", "candidates", "protocol".
    field: str | None = None
    request_id: str | None = None
