"""Store the Alertmanager URL with each alert instead of its silence and source links.

Both links are rebuilt from the alert's own columns whenever it is read (receiver/enrich.py,
`read_links`); rows written before keep the links they were stored with.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("alertmanager_url", sa.Text(), nullable=True))


def downgrade() -> None:
    # Alerts stored since the upgrade lose their silence link (their source link is their generatorURL).
    op.drop_column("alerts", "alertmanager_url")
