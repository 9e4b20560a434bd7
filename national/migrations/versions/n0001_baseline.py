"""Baseline: the national schema as the release before versions made it (its create_all), table for table.

A database made by that release has these tables and no alembic_version: tpskit.national.schema stamps it
at this revision instead of running this one. Written out here, not metadata.create_all: later revisions
change the metadata, and this revision must keep building what that release built.

Revision ID: n0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "national_results",
        sa.Column("province", sa.String(2), primary_key=True),
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("district", sa.String(64), nullable=False),
        sa.Column("kit_id", sa.String(64), nullable=False),
        sa.Column("tps", sa.String(13), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("captured_at", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("stored_at", sa.Float, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("envelope_sha256", sa.String(64), nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("acceptance", sa.Text, nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
        postgresql_partition_by="LIST (province)",
    )
    op.create_table(
        "national_rejections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("district", sa.String(64)),
        sa.Column("submission_id", sa.String(64)),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("stream_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("national_rejections")
    op.drop_table("national_results")
