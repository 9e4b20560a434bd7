"""Baseline: the schema of the release before versions (its create_all), table for table.

A database made by that release has these tables and no alembic_version: tpskit.district.schema stamps
it at this revision instead of running this one. Written out here, not metadata.create_all: later
revisions change the metadata, and this revision must keep building what that release built.

Revision ID: 0001
Revises:
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
        "results",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("kit_id", sa.String(64), nullable=False),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("tps", sa.String(13), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("form_code", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("captured_at", sa.String(40), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("envelope_sha256", sa.String(64), nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
    )
    op.create_index("results_kit_seq", "results", ["kit_id", "cert_serial", "seq"])
    op.create_index("results_tps", "results", ["tps", "template_id"])
    op.create_table(
        "evidence",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("tps", sa.String(13), nullable=False),
        sa.Column("jpeg", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pending",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("kit_id", sa.String(64), nullable=False),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("evidence_bytes", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "rejections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("kit_id", sa.String(64)),
        sa.Column("submission_id", sa.String(64)),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("envelope_sha256", sa.String(64)),
    )


def downgrade() -> None:
    for table in ("rejections", "pending", "evidence", "results"):
        op.drop_table(table)
