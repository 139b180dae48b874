"""Feedback store: suggestions and labelers' decisions in SQLite or PostgreSQL.

Every method is synchronous and opens its own session, so async handlers call
them through a worker thread. `open_store` runs the Alembic migrations once per
database URL and process before returning the shared `Store`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import selectinload, sessionmaker

from service.assist.schemas import Decision, SuggestedLabel, Suggestion
from service.assist.tables import DecisionRow, SuggestionLabelRow, SuggestionRow

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Its own version table, so the store can share a database with other Alembic projects.
VERSION_TABLE = "assist_alembic_version"
# Arbitrary constant key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x6D6C6C6D


@dataclass(frozen=True)
class HistoryRow:
    """One suggestion with its latest decision, the unit that the report counts."""

    suggestion_id: str
    class_id: str | None
    class_name: str | None
    confidence: float
    num_labels: int
    decision: str | None
    rank: int | None


def _as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; every value was written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _suggestion_from_row(row: SuggestionRow) -> Suggestion:
    labels = [
        SuggestedLabel(
            rank=label.rank,
            id=label.class_id,
            index=label.class_index,
            name=label.name,
            score=label.score,
            confidence=label.confidence,
        )
        for label in row.labels
    ]
    return Suggestion(
        id=row.id,
        created_at=_as_utc(row.created_at),
        source=row.source,
        image_ref=row.image_ref,
        image_sha256=row.image_sha256,
        task_id=row.task_id,
        project_id=row.project_id,
        taxonomy=row.taxonomy,
        model=row.model,
        model_version=row.model_version,
        raw_answer=row.raw_answer,
        labels=labels,
        uncertainty=row.uncertainty,
        confirmed=row.confirmed,
        request_id=row.request_id,
    )


def _decision_from_row(row: DecisionRow) -> Decision:
    return Decision(
        id=row.id,
        suggestion_id=row.suggestion_id,
        created_at=_as_utc(row.created_at),
        decision=row.decision,
        rank=row.rank,
        class_id=row.class_id,
        class_name=row.class_name,
        source=row.source,
        annotator=row.annotator,
        external_id=row.external_id,
    )


def _create_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    # SQLite leaves foreign keys off per connection unless asked, and the
    # default rollback journal blocks readers during a write.
    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the database schema to the newest Alembic revision."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Service workers start together; the lock makes the others wait
            # until the first one has created the tables, until commit.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        # NOTE: SQLite has no such lock, so several processes migrating a new
        # SQLite file at the same moment can fail with "table already exists".
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """Suggestions and decisions in one SQL database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.engine = _create_engine(database_url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; safe to repeat."""
        migrate(self.engine)
        logger.info("feedback store ready at %s", make_url(self.database_url).render_as_string(hide_password=True))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def add_suggestion(self, suggestion: Suggestion) -> None:
        """Insert a suggestion with its labels."""
        row = SuggestionRow(
            id=suggestion.id,
            created_at=suggestion.created_at,
            source=suggestion.source,
            image_ref=suggestion.image_ref,
            image_sha256=suggestion.image_sha256,
            task_id=suggestion.task_id,
            project_id=suggestion.project_id,
            taxonomy=suggestion.taxonomy,
            model=suggestion.model,
            model_version=suggestion.model_version,
            raw_answer=suggestion.raw_answer,
            uncertainty=suggestion.uncertainty,
            confirmed=suggestion.confirmed,
            request_id=suggestion.request_id,
            labels=[
                SuggestionLabelRow(
                    rank=label.rank,
                    class_id=label.id,
                    class_index=label.index,
                    name=label.name,
                    score=label.score,
                    confidence=label.confidence,
                )
                for label in suggestion.labels
            ],
        )
        with self._sessions.begin() as session:
            session.add(row)

    def get_suggestion(self, suggestion_id: str) -> Suggestion | None:
        """Return the suggestion with this id, or None."""
        with self._sessions() as session:
            row = session.get(SuggestionRow, suggestion_id, options=[selectinload(SuggestionRow.labels)])
            return _suggestion_from_row(row) if row is not None else None

    def latest_suggestion(self, *, task_id: str | None = None, image_ref: str | None = None) -> Suggestion | None:
        """Return the newest suggestion for a Label Studio task id or an image reference."""
        if (task_id is None) == (image_ref is None):
            raise ValueError("give exactly one of task_id or image_ref")

        query = select(SuggestionRow).options(selectinload(SuggestionRow.labels))
        if task_id is not None:
            query = query.where(SuggestionRow.task_id == task_id)
        else:
            query = query.where(SuggestionRow.image_ref == image_ref)
        query = query.order_by(SuggestionRow.created_at.desc()).limit(1)

        with self._sessions() as session:
            row = session.scalars(query).first()
            return _suggestion_from_row(row) if row is not None else None

    def add_decision(
        self,
        suggestion_id: str,
        decision: str,
        *,
        rank: int | None,
        class_id: str | None,
        class_name: str | None,
        source: str,
        annotator: str | None = None,
        external_id: str | None = None,
        created_at: datetime | None = None,
    ) -> Decision:
        """Insert a decision on a stored suggestion; raise KeyError for an unknown suggestion."""
        with self._sessions.begin() as session:
            if session.get(SuggestionRow, suggestion_id) is None:
                raise KeyError(suggestion_id)
            row = DecisionRow(
                suggestion_id=suggestion_id,
                created_at=created_at or datetime.now(UTC),
                decision=decision,
                rank=rank,
                class_id=class_id,
                class_name=class_name,
                source=source,
                annotator=annotator,
                external_id=external_id,
            )
            session.add(row)
            session.flush()
            return _decision_from_row(row)

    def latest_decision(self, suggestion_id: str) -> Decision | None:
        """Return the newest decision on a suggestion, or None."""
        query = (
            select(DecisionRow)
            .where(DecisionRow.suggestion_id == suggestion_id)
            .order_by(DecisionRow.id.desc())
            .limit(1)
        )
        with self._sessions() as session:
            row = session.scalars(query).first()
            return _decision_from_row(row) if row is not None else None

    def decisions(self, suggestion_id: str) -> list[Decision]:
        """Return every decision on a suggestion, oldest first."""
        query = (
            select(DecisionRow)
            .where(DecisionRow.suggestion_id == suggestion_id)
            .order_by(DecisionRow.id)
        )
        with self._sessions() as session:
            return [_decision_from_row(row) for row in session.scalars(query)]

    def review_states(self, image_refs: list[str], source: str = "review") -> dict[str, tuple[Suggestion, Decision | None]]:
        """Return the newest suggestion from `source` and its latest decision for each image reference."""
        if not image_refs:
            return {}

        states: dict[str, tuple[Suggestion, Decision | None]] = {}
        with self._sessions() as session:
            latest: dict[str, SuggestionRow] = {}
            # SQLite allows at most 32766 bound parameters per statement, so large folders go in chunks.
            for start in range(0, len(image_refs), 1000):
                chunk = image_refs[start:start + 1000]
                query = (
                    select(SuggestionRow)
                    .where(SuggestionRow.image_ref.in_(chunk), SuggestionRow.source == source)
                    .options(selectinload(SuggestionRow.labels))
                    .order_by(SuggestionRow.created_at, SuggestionRow.id)
                )
                for row in session.scalars(query):
                    latest[row.image_ref] = row

            ids = [row.id for row in latest.values()]
            decisions: dict[str, DecisionRow] = {}
            for start in range(0, len(ids), 1000):
                query = (
                    select(DecisionRow)
                    .where(DecisionRow.suggestion_id.in_(ids[start:start + 1000]))
                    .order_by(DecisionRow.id)
                )
                for row in session.scalars(query):
                    decisions[row.suggestion_id] = row

            for image_ref, row in latest.items():
                decision = decisions.get(row.id)
                states[image_ref] = (
                    _suggestion_from_row(row),
                    _decision_from_row(decision) if decision is not None else None,
                )
        return states

    def count_suggestions(self) -> int:
        """Return the number of stored suggestions."""
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(SuggestionRow)) or 0

    def history(self, since: datetime | None = None) -> list[HistoryRow]:
        """Return every suggestion with its latest decision (None when undecided).

        The latest decision is the one inserted last, so a Label Studio update
        replaces the decision of the annotation it updates.
        """
        latest_id = (
            select(DecisionRow.suggestion_id, func.max(DecisionRow.id).label("decision_id"))
            .group_by(DecisionRow.suggestion_id)
            .subquery()
        )
        query = (
            select(SuggestionRow, DecisionRow)
            .outerjoin(latest_id, latest_id.c.suggestion_id == SuggestionRow.id)
            .outerjoin(DecisionRow, DecisionRow.id == latest_id.c.decision_id)
            .options(selectinload(SuggestionRow.labels))
            .order_by(SuggestionRow.created_at, SuggestionRow.id)
        )
        if since is not None:
            query = query.where(SuggestionRow.created_at >= since)

        rows = []
        with self._sessions() as session:
            for suggestion, decision in session.execute(query):
                first = suggestion.labels[0] if suggestion.labels else None
                rows.append(
                    HistoryRow(
                        suggestion_id=suggestion.id,
                        class_id=first.class_id if first else None,
                        class_name=first.name if first else None,
                        confidence=first.confidence if first else 0.0,
                        num_labels=len(suggestion.labels),
                        decision=decision.decision if decision else None,
                        rank=decision.rank if decision else None,
                    )
                )
        return rows


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(database_url: str) -> Store:
    """Return the process-wide store for a URL, migrating the database on first use."""
    with _stores_lock:
        store = _stores.get(database_url)
        if store is None:
            store = Store(database_url)
            store.migrate()
            _stores[database_url] = store
        return store


def close_stores() -> None:
    """Close and forget every store that `open_store` opened."""
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
