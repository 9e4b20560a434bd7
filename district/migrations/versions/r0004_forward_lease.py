"""The forward lease: one service instance of a district forwards its outbox at a time, and another takes
over when that one's lease lapses (tpskit.district.forward), instead of every instance sending it all.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forward_lease",
        sa.Column("district", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("forward_lease")
