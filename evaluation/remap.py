"""Offline re-mapping of raw answers: exact string match or embedding mapping with a chosen encoder.

The service maps each answer once, with its configured encoder. The audit also
needs the same answers mapped other ways, without asking the model again:
- exact: the answer, after case, punctuation and leading-article folding
  (`mapping.normalize.normalize_text`), must equal a class name or synonym;
  anything else is out of list. This is the strict string-match practice.
- embedding: `mapping.Mapper` with a given text encoder (exact and synonym
  matches first, then the nearest class by cosine similarity above the
  out-of-list threshold).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mapping import Mapper, MappingResult, Taxonomy, load_encoder
from mapping.parsing import is_refusal

from evaluation.encoders import resolve_encoder
from evaluation.grid import Setting
from service.schemas import ClassifyResult

logger = logging.getLogger(__name__)


@dataclass
class MappedAnswer:
    """The class an answer maps to, in the fields a result row stores."""

    prediction: str | None
    predictions: list[str] = field(default_factory=list)
    prediction_name: str | None = None
    method: str = "none"
    similarity: float = 0.0
    margin: float = 0.0
    out_of_list: bool = False
    abstain: bool = False
    ambiguous: bool = False


def from_mapping_result(result: MappingResult) -> MappedAnswer:
    top = result.top
    return MappedAnswer(
        prediction=top.id if top else None,
        predictions=[label.id for label in result.labels],
        prediction_name=top.name if top else None,
        method=result.method,
        similarity=float(result.similarity),
        margin=float(result.margin),
        out_of_list=bool(result.out_of_list),
        abstain=bool(result.abstain),
        ambiguous=bool(result.ambiguous),
    )


def from_service_result(result: ClassifyResult) -> MappedAnswer:
    """Read the service's own mapping; out-of-list and abstaining answers have no prediction."""
    mapped = not (result.out_of_list or result.abstain) and bool(result.labels)
    return MappedAnswer(
        prediction=result.labels[0].id if mapped else None,
        predictions=[label.id for label in result.labels],
        prediction_name=result.labels[0].name if mapped else None,
        method=result.method,
        similarity=result.similarity,
        margin=result.margin,
        out_of_list=result.out_of_list,
        abstain=result.abstain,
        ambiguous=result.ambiguous,
    )


def exact_map(taxonomy: Taxonomy, answer: str, candidates: Sequence[str] | None = None, top_k: int = 5) -> MappedAnswer:
    """Map an answer only when it equals a class name or synonym (after folding)."""
    if not answer.strip() or is_refusal(answer):
        return MappedAnswer(prediction=None, abstain=True)

    matches = taxonomy.lookup_name(answer)
    if candidates is not None:
        allowed = set(candidates)
        matches = [entry for entry in matches if entry.id in allowed]
    if not matches:
        return MappedAnswer(prediction=None, out_of_list=True)

    return MappedAnswer(
        prediction=matches[0].id,
        predictions=[entry.id for entry in matches[:top_k]],
        prediction_name=matches[0].name,
        method="exact",
        similarity=1.0,
        out_of_list=False,
        # A name shared by several classes ("crane") matches all of them; the first wins.
        ambiguous=len(matches) > 1,
    )


class Remapper:
    """Maps raw answers the way a setting asks, loading one Mapper per encoder on first use."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        default_encoder: str,
        default_mapper: Mapper | None = None,
        cache_dir: Path | None = None,
        out_of_list_threshold: float = 0.5,
    ) -> None:
        self.taxonomy = taxonomy
        self.default_encoder = default_encoder
        self._mappers: dict[str, Mapper] = {}
        if default_mapper is not None:
            self._mappers[default_encoder] = default_mapper
        self._cache_dir = cache_dir
        self._threshold = out_of_list_threshold

    @property
    def default_mapper(self) -> Mapper:
        """Return the mapper of the default encoder; remote runs build it on first use."""
        return self.mapper(None)

    def mapper(self, encoder: str | None) -> Mapper:
        """Return the mapper of an encoder (None = the default one)."""
        name = encoder or self.default_encoder
        if name not in self._mappers:
            self._mappers[name] = self._build_mapper(name)
        return self._mappers[name]

    def _build_mapper(self, encoder: str) -> Mapper:
        logger.info("building the class index for encoder %s (cached after the first run)", encoder)
        return Mapper(
            self.taxonomy,
            load_encoder(resolve_encoder(encoder)),
            cache_dir=self._cache_dir,
            out_of_list_threshold=self._threshold,
        )

    def map_text(self, setting: Setting, answer: str, candidates: Sequence[str] | None) -> MappedAnswer:
        """Map one free-text answer with the setting's mapping method."""
        if setting.mapping == "exact":
            return exact_map(self.taxonomy, answer, candidates, setting.top_k)
        result = self.mapper(setting.encoder).map(answer, top_k=setting.top_k, candidates=candidates)
        return from_mapping_result(result)

    def map_result(
        self, setting: Setting, result: ClassifyResult, candidates: Sequence[str] | None
    ) -> tuple[MappedAnswer, list[str | None] | None]:
        """Map a service result under the setting: (top-1 mapping, per-object predictions or None)."""
        if setting.mapping == "service":
            objects = None
            if result.objects is not None:
                objects = [
                    item.labels[0].id if item.labels and not item.out_of_list else None for item in result.objects
                ]
            return from_service_result(result), objects

        if setting.protocol == "multilabel":
            answers = [item.answer for item in result.objects] if result.objects else [result.raw_answer]
            mapped = [self.map_text(setting, answer, candidates) for answer in answers]
            first = next((item for item in mapped if item.prediction is not None), mapped[0])
            return first, [item.prediction for item in mapped]

        return self.map_text(setting, result.raw_answer, candidates), None
