"""Suggestions: one open-ended classification, confidences, an optional confirming pass."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from service.assist import metrics
from service.assist.confidence import confirm_confidences, label_confidences, uncertainty
from service.assist.schemas import Source, SuggestedLabel, Suggestion
from service.assist.settings import AssistSettings
from service.assist.store import Store
from service.errors import ServiceError
from service.schemas import ClassifyParams, ClassifyResult, Label

if TYPE_CHECKING:
    from mapping import Mapper

logger = logging.getLogger(__name__)

Classify = Callable[[bytes, ClassifyParams], Awaitable[ClassifyResult]]
# Returns the mapper of a served taxonomy (None: the default one).
MapperLookup = Callable[[str | None], "Mapper"]

# The choice protocol shows options as letters A..Z.
MAX_CHOICE_OPTIONS = 26


class Suggester:
    """Build suggestions with `classify` and store each one before returning it."""

    def __init__(
        self,
        classify: Classify,
        store: Callable[[], Store],
        settings: AssistSettings,
        mappers: MapperLookup | None = None,
    ) -> None:
        self._classify = classify
        self._store = store
        self.settings = settings
        self._mappers = mappers

    async def suggest(
        self,
        image: bytes,
        *,
        source: Source,
        top_k: int | None = None,
        confirm: bool | None = None,
        taxonomy: str | None = None,
        candidates: list[str] | None = None,
        image_ref: str | None = None,
        task_id: str | None = None,
        project_id: str | None = None,
        model_version: str | None = None,
    ) -> Suggestion:
        """Suggest the top-k labels for one image and store the suggestion.

        Errors of `classify` (the service's ServiceError) propagate unchanged.
        """
        top_k = top_k or self.settings.top_k
        confirm = self.settings.confirm if confirm is None else confirm
        taxonomy = taxonomy or self.settings.taxonomy

        params = ClassifyParams(protocol="open", taxonomy=taxonomy, top_k=top_k, candidates=candidates)
        result = await self._classify(image, params)
        labels = result.labels[:top_k]
        if 0 < len(labels) < top_k and not result.abstain and self._mappers is not None:
            labels = await run_in_threadpool(self._add_neighbours, labels, top_k, taxonomy, candidates)
        confidences = label_confidences([label.score for label in labels], abstain=result.abstain)

        confirmed: bool | None = None
        if confirm and 2 <= len(labels) <= MAX_CHOICE_OPTIONS:
            probabilities = None
            if self.settings.confirm_protocol == "score":
                probabilities = await self._score(image, labels, taxonomy, result.request_id)
            if probabilities is not None:
                # The model's probability of each suggested class is its confidence.
                confidences = probabilities
                confirmed = max(range(len(labels)), key=lambda position: probabilities[position]) == 0
            else:
                picked = await self._confirm(image, labels, taxonomy, result.request_id)
                confidences = confirm_confidences(confidences, picked)
                confirmed = picked == 0

        ranked = _ranked(labels, confidences)
        suggestion = Suggestion(
            id=str(uuid.uuid4()),
            created_at=datetime.now(UTC),
            source=source,
            image_ref=image_ref,
            image_sha256=hashlib.sha256(image).hexdigest(),
            task_id=task_id,
            project_id=project_id,
            taxonomy=result.taxonomy,
            model=result.model,
            model_version=model_version or self.settings.model_version or result.model,
            raw_answer=result.raw_answer,
            labels=ranked,
            uncertainty=uncertainty([label.confidence for label in ranked]),
            confirmed=confirmed,
            request_id=result.request_id,
        )

        await run_in_threadpool(self._store().add_suggestion, suggestion)
        metrics.SUGGESTIONS.labels(source=source, taxonomy=suggestion.taxonomy).inc()
        metrics.SUGGESTION_CONFIDENCE.labels(source=source).observe(suggestion.confidence)
        logger.info(
            "suggestion %s for %s: %s (confidence %.3f, uncertainty %.3f)",
            suggestion.id,
            image_ref or suggestion.image_sha256[:12],
            suggestion.labels[0].name if suggestion.labels else "no label",
            suggestion.confidence,
            suggestion.uncertainty,
        )
        return suggestion

    def _add_neighbours(
        self, labels: list[Label], top_k: int, taxonomy: str | None, candidates: list[str] | None
    ) -> list[Label]:
        # A name match maps to one class only, so the other suggestions are
        # the classes nearest to it by embedding, scored by cosine similarity.
        mapper = self._mappers(taxonomy)
        neighbours = mapper.nearest_classes(
            labels[0].name, top_k - len(labels), candidates=candidates, exclude=[label.id for label in labels]
        )
        extra = [Label(id=item.id, index=item.index, name=item.name, score=item.score) for item in neighbours]
        return [*labels, *extra]

    async def _score(
        self, image: bytes, labels: list[Label], taxonomy: str | None, request_id: str
    ) -> list[float] | None:
        """Return the score protocol's probability of each label, or None where the backend cannot score."""
        params = ClassifyParams(
            protocol="score", taxonomy=taxonomy, candidates=[label.id for label in labels], top_k=len(labels)
        )
        try:
            result = await self._classify(image, params)
        except ServiceError as error:
            if error.field != "protocol":
                raise
            logger.info("request %s: backend cannot score candidates (%s); confirming with choice", request_id, error)
            return None

        probabilities = {label.id: label.score for label in result.labels}
        if not probabilities:
            logger.info("scoring pass for request %s returned no probabilities", request_id)
            return None
        return [float(probabilities.get(label.id, 0.0)) for label in labels]

    async def _confirm(self, image: bytes, labels: list[Label], taxonomy: str | None, request_id: str) -> int | None:
        # The multiple-choice pass offers exactly the suggested classes, by id.
        params = ClassifyParams(
            protocol="choice",
            taxonomy=taxonomy,
            candidates=[label.id for label in labels],
            num_options=max(2, len(labels)),
            top_k=1,
        )
        result = await self._classify(image, params)
        if result.abstain or not result.labels:
            logger.info("confirming pass for request %s picked no option (answer %r)", request_id, result.raw_answer)
            return None

        picked_id = result.labels[0].id
        for position, label in enumerate(labels):
            if label.id == picked_id:
                return position
        logger.warning("confirming pass for request %s picked %s, which was not offered", request_id, picked_id)
        return None


def _ranked(labels: list[Label], confidences: list[float]) -> list[SuggestedLabel]:
    # A stable sort keeps the mapping order between labels of equal confidence.
    order = sorted(range(len(labels)), key=lambda position: -confidences[position])
    return [
        SuggestedLabel(
            rank=rank,
            id=labels[position].id,
            index=labels[position].index,
            name=labels[position].name,
            score=labels[position].score,
            confidence=min(max(confidences[position], 0.0), 1.0),
        )
        for rank, position in enumerate(order, start=1)
    ]
