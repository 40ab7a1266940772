"""events, receipt_alerts, notifications and notification_alerts lose their foreign keys.

On PostgreSQL every foreign key runs a trigger per inserted row: a query on the parent table that also
locks the parent row. At 10 alerts per webhook these triggers were a fifth of the database's CPU while
ingesting (perf). Retention now deletes the rows that refer to what it prunes itself, in the same
transaction (store/retention.py), and ingest confirms that the alerts it refers to still exist.
Dropping events.receipt_id's ON DELETE SET NULL also ends a scan of the whole events table per pruned
receipt (no index serves that column); readers join receipts instead.

SQLite copies the four tables (it cannot drop a constraint in place). The way down deletes rows whose
parent is gone before the foreign keys come back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, parent table, ON DELETE action), in the order 0001 created them.
_FOREIGN_KEYS = (
    ("events", "alert_id", "alerts", "CASCADE"),
    ("events", "receipt_id", "receipts", "SET NULL"),
    ("notifications", "receipt_id", "receipts", "CASCADE"),
    ("receipt_alerts", "alert_id", "alerts", "CASCADE"),
    ("receipt_alerts", "receipt_id", "receipts", "CASCADE"),
    ("notification_alerts", "alert_id", "alerts", "CASCADE"),
    ("notification_alerts", "notification_id", "notifications", "CASCADE"),
)
# SQLite copies a table and drops the old one, and with foreign keys on, dropping a table deletes its
# rows first, cascading to the rows that refer to them: notification_alerts must lose its foreign key
# to notifications before notifications is copied, and on the way down notifications must be copied
# before notification_alerts refers to it again.
_TABLES = ("notification_alerts", "receipt_alerts", "events", "notifications")


def _name(table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}"


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for child, column, parent, _ in _FOREIGN_KEYS:
                if child == table:
                    batch.drop_constraint(_name(table, column, parent), type_="foreignkey")


def downgrade() -> None:
    for table, column, parent, action in _FOREIGN_KEYS:
        # NOT EXISTS: PostgreSQL may run NOT IN (subquery) once per row on a large table.
        orphan = f"{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = {table}.{column})"
        if action == "SET NULL":
            op.execute(f"UPDATE {table} SET {column} = NULL WHERE {orphan}")
        else:
            op.execute(f"DELETE FROM {table} WHERE {orphan}")
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            for child, column, parent, action in _FOREIGN_KEYS:
                if child == table:
                    batch.create_foreign_key(_name(table, column, parent), parent, [column], ["id"], ondelete=action)
