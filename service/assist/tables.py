"""SQLAlchemy tables of the feedback store; `migrations/` creates them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class SuggestionRow(Base):
    __tablename__ = "assist_suggestions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(16))
    image_ref: Mapped[str | None] = mapped_column(String(1024), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    task_id: Mapped[str | None] = mapped_column(String(128), index=True)
    project_id: Mapped[str | None] = mapped_column(String(128))
    taxonomy: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(500))
    model_version: Mapped[str] = mapped_column(String(500))
    raw_answer: Mapped[str] = mapped_column(Text)
    uncertainty: Mapped[float] = mapped_column(Float)
    confirmed: Mapped[bool | None] = mapped_column(Boolean)
    request_id: Mapped[str] = mapped_column(String(64))

    labels: Mapped[list[SuggestionLabelRow]] = relationship(
        back_populates="suggestion", order_by="SuggestionLabelRow.rank", cascade="all, delete-orphan"
    )


class SuggestionLabelRow(Base):
    __tablename__ = "assist_suggestion_labels"

    suggestion_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("assist_suggestions.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    class_id: Mapped[str] = mapped_column(String(200))
    class_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(500))
    score: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)

    suggestion: Mapped[SuggestionRow] = relationship(back_populates="labels")


class DecisionRow(Base):
    __tablename__ = "assist_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suggestion_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("assist_suggestions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int | None] = mapped_column(Integer)
    class_id: Mapped[str | None] = mapped_column(String(200))
    class_name: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(16))
    annotator: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(128))
