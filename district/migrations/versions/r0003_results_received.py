"""An index on results.received_at: the dashboard reads the results that arrived since it last looked
(tpskit.district.status.SnapshotReader) instead of the whole table at every change.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("results_received", "results", ["received_at"])


def downgrade() -> None:
    op.drop_index("results_received", table_name="results")
