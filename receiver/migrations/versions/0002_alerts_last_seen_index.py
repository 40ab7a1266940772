"""Index alerts.last_seen_at, so retention finds what to prune without scanning the table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_last_seen_at", "alerts", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_last_seen_at", table_name="alerts")
