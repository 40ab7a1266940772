"""Index alerts on (starts_at, id) instead of starts_at alone.

A time window's ids then come from the index alone (an index-only scan on PostgreSQL; SQLite's index
already carried the rowid), which is how the history API pages through a window far in the past.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_starts_at_id", "alerts", ["starts_at", "id"])
    op.drop_index("ix_alerts_starts_at", table_name="alerts")


def downgrade() -> None:
    op.create_index("ix_alerts_starts_at", "alerts", ["starts_at"])
    op.drop_index("ix_alerts_starts_at_id", table_name="alerts")
