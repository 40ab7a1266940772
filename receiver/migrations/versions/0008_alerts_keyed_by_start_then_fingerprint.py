"""One occurrence per (starts_at, fingerprint) instead of (fingerprint, starts_at); no (starts_at, id).

A fingerprint is a hash of the labels, so in an index keyed by it first every new alert lands on a leaf
of its own: in a group commit of 160 new alerts, 160 leaf pages to write. New alerts start about now,
so keyed by starts_at first their entries land together at the end of the index. The same index also
gives a time window's ids without reading the table (SQLite's entries carry the rowid, PostgreSQL's
include id), which the (starts_at, id) index was for: it goes.

SQLite copies the alerts table (it cannot drop a table's UNIQUE constraint in place); nothing refers
to alerts with a foreign key since 0007, so the copy deletes nothing else. PostgreSQL drops the old
constraint and index and builds the new index, in the migration's one transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NEW = "ix_alerts_starts_at_fingerprint"
_OLD_UNIQUE = "uq_alerts_fingerprint_starts_at"
_OLD_WINDOW = "ix_alerts_starts_at_id"


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(_OLD_UNIQUE, type_="unique")
        batch.drop_index(_OLD_WINDOW)
        batch.create_index(_NEW, ["starts_at", "fingerprint"], unique=True, postgresql_include=["id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index(_NEW)
        batch.create_index(_OLD_WINDOW, ["starts_at", "id"])
        batch.create_unique_constraint(_OLD_UNIQUE, ["fingerprint", "starts_at"])
