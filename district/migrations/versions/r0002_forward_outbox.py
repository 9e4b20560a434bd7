"""The national tier's forward outbox (commit 2b9e34e): one row per accepted result to forward.

That commit added the table to the metadata while create_all still owned the schema, so a database made
by it (unversioned, stamped at the baseline) may have the table already: it is created only when missing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("forward_outbox"):
        return
    op.create_table(
        "forward_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
    )
    op.create_index("forward_outbox_unsent", "forward_outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_table("forward_outbox")
