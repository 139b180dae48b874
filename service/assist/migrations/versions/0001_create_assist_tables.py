"""Create the suggestion, suggested-label and decision tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assist_suggestions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("image_ref", sa.String(1024), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(128), nullable=True),
        sa.Column("project_id", sa.String(128), nullable=True),
        sa.Column("taxonomy", sa.String(200), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("model_version", sa.String(500), nullable=False),
        sa.Column("raw_answer", sa.Text(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_assist_suggestions_created_at", "assist_suggestions", ["created_at"])
    op.create_index("ix_assist_suggestions_image_ref", "assist_suggestions", ["image_ref"])
    op.create_index("ix_assist_suggestions_image_sha256", "assist_suggestions", ["image_sha256"])
    op.create_index("ix_assist_suggestions_task_id", "assist_suggestions", ["task_id"])

    op.create_table(
        "assist_suggestion_labels",
        sa.Column(
            "suggestion_id",
            sa.String(36),
            sa.ForeignKey("assist_suggestions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("class_id", sa.String(200), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
    )

    op.create_table(
        "assist_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "suggestion_id",
            sa.String(36),
            sa.ForeignKey("assist_suggestions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("class_id", sa.String(200), nullable=True),
        sa.Column("class_name", sa.String(500), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("annotator", sa.String(200), nullable=True),
        sa.Column("external_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_assist_decisions_suggestion_id", "assist_decisions", ["suggestion_id"])


def downgrade() -> None:
    op.drop_index("ix_assist_decisions_suggestion_id", table_name="assist_decisions")
    op.drop_table("assist_decisions")
    op.drop_table("assist_suggestion_labels")
    op.drop_index("ix_assist_suggestions_task_id", table_name="assist_suggestions")
    op.drop_index("ix_assist_suggestions_image_sha256", table_name="assist_suggestions")
    op.drop_index("ix_assist_suggestions_image_ref", table_name="assist_suggestions")
    op.drop_index("ix_assist_suggestions_created_at", table_name="assist_suggestions")
    op.drop_table("assist_suggestions")
