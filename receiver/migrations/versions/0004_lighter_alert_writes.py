"""Fewer B-tree entries per stored alert: the write path's largest cost on SQLite.

- The `alertname`, `severity` and `model` indexes on alerts go: each of these columns is a copy of a
  label, and the history API now finds those filters through the label index, which holds the same
  entries. Each index cost every insert a leaf page of its own in the commit.
- On SQLite, alert_labels becomes a WITHOUT ROWID table clustered on its primary key (alert_id, name):
  two B-trees per label row instead of three (the rowid table, the primary key's index and the
  (name, value, alert_id) index). The table is copied, which takes a while on a large history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LABEL_COPIES = ("alertname", "severity", "model")

_LABELS_TABLE = """
CREATE TABLE {name} (
    alert_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    CONSTRAINT pk_alert_labels PRIMARY KEY (alert_id, name),
    CONSTRAINT fk_alert_labels_alert_id_alerts FOREIGN KEY(alert_id) REFERENCES alerts (id) ON DELETE CASCADE
){options}
"""


def upgrade() -> None:
    for column in _LABEL_COPIES:
        op.drop_index(f"ix_alerts_{column}_id", table_name="alerts")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_labels(" WITHOUT ROWID")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_labels("")
    for column in _LABEL_COPIES:
        op.create_index(f"ix_alerts_{column}_id", "alerts", [column, "id"])


def _rebuild_sqlite_labels(options: str) -> None:
    """SQLite cannot change a table's rowid-ness in place: copy the rows into a new table."""
    op.execute(_LABELS_TABLE.format(name="alert_labels_new", options=options))
    # Foreign keys are on during the copy; label rows whose alert is gone (left by a delete made with
    # foreign keys off, e.g. in the sqlite3 shell) are dropped rather than failing the upgrade.
    op.execute(
        "INSERT INTO alert_labels_new (alert_id, name, value) SELECT alert_id, name, value FROM alert_labels"
        " WHERE alert_id IN (SELECT id FROM alerts)"
    )
    op.execute("DROP TABLE alert_labels")
    op.execute("ALTER TABLE alert_labels_new RENAME TO alert_labels")
    op.create_index("ix_alert_labels_name_value_alert_id", "alert_labels", ["name", "value", "alert_id"])
