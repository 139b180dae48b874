"""State shared by the assist routes: settings, the store, class lookup and the suggester."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from service.assist import metrics
from service.assist.decisions import ResolvedDecision
from service.assist.labels import LabelIndex
from service.assist.schemas import Decision, Suggestion
from service.assist.settings import AssistSettings
from service.assist.store import Store, open_store
from service.assist.suggest import Classify, MapperLookup, Suggester
from service.errors import ServiceError

if TYPE_CHECKING:
    from mapping import Taxonomy

logger = logging.getLogger(__name__)

TaxonomyLookup = Callable[[str | None], "Taxonomy"]


class UnknownTaxonomyError(ValueError):
    """Raised when the service does not serve the requested taxonomy."""


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    """Return the service's error body: {"error", "field", "request_id"}."""
    return JSONResponse({"error": message, "field": field, "request_id": None}, status_code=status)


def service_error_response(error: ServiceError) -> JSONResponse:
    """Return the response of a failed classification, logging server-side failures."""
    if error.status >= 500:
        logger.error("classification for annotation assist failed (request %s): %s", error.request_id, error.message)
    return error.to_response()


class AssistContext:
    def __init__(
        self,
        classify: Classify,
        taxonomies: TaxonomyLookup,
        settings: AssistSettings,
        mappers: MapperLookup | None = None,
    ) -> None:
        self.settings = settings
        self._taxonomies = taxonomies
        self._indexes: dict[str, LabelIndex] = {}
        self._indexes_lock = threading.Lock()
        self.suggester = Suggester(classify, self.store, settings, mappers)

    def store(self) -> Store:
        """Return the shared store, opening and migrating the database on first use."""
        return open_store(self.settings.database_url)

    def label_index(self, taxonomy: str | None) -> LabelIndex:
        """Return the autocomplete index of a taxonomy; raise UnknownTaxonomyError for one not served."""
        name = taxonomy or self.settings.taxonomy
        try:
            taxonomy_object = self._taxonomies(name)
        except (KeyError, ValueError, ServiceError) as error:
            raise UnknownTaxonomyError(f"taxonomy {name!r} is not served: {error}") from error
        with self._indexes_lock:
            index = self._indexes.get(taxonomy_object.name)
            if index is None:
                index = LabelIndex(taxonomy_object)
                self._indexes[taxonomy_object.name] = index
            return index

    async def record(
        self,
        suggestion: Suggestion,
        resolved: ResolvedDecision,
        *,
        source: str,
        annotator: str | None = None,
        external_id: str | None = None,
    ) -> Decision:
        """Store a decision on a suggestion and count it."""
        decision = await run_in_threadpool(
            self.store().add_decision,
            suggestion.id,
            resolved.decision,
            rank=resolved.rank,
            class_id=resolved.class_id,
            class_name=resolved.class_name,
            source=source,
            annotator=annotator,
            external_id=external_id,
        )
        metrics.record_decision(decision.decision, decision.rank, source)
        logger.info(
            "decision %s on suggestion %s: %s rank=%s class=%s",
            decision.id, suggestion.id, decision.decision, decision.rank, decision.class_id,
        )
        return decision
