"""An index on results.received_at: the dashboard reads the results that arrived since it last looked
(tpskit.district.status.SnapshotReader) instead of the whole table at every change.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "results_received" in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("results")}:
        return
    op.create_index("results_received", "results", ["received_at"])


def downgrade() -> None:
    op.drop_index("results_received", table_name="results")
