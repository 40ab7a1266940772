"""alert_labels keyed by (name, value, alert_id): one B-tree per label row instead of two.

The table was clustered on (alert_id, name) with a secondary index on (name, value, alert_id), and a
foreign key to alerts. Every read goes through (name, value, alert_id): label filters, distinct
values, and now retention, which deletes an alert's label rows by the keys in its `labels` column
instead of through the foreign key's cascade. So the index becomes the primary key, the other
B-tree and the foreign key go (its checks would need an index on alert_id).

SQLite copies the table (it cannot re-key one in place); PostgreSQL builds the new primary key's index.
Both take a while on a large history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SQLITE_TABLE = """
CREATE TABLE alert_labels_new (
    alert_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    {constraints}
) WITHOUT ROWID
"""
_KEYED_BY_LABEL = "CONSTRAINT pk_alert_labels PRIMARY KEY (name, value, alert_id)"
_KEYED_BY_ALERT = (
    "CONSTRAINT pk_alert_labels PRIMARY KEY (alert_id, name),\n"
    "    CONSTRAINT fk_alert_labels_alert_id_alerts FOREIGN KEY(alert_id) REFERENCES alerts (id) ON DELETE CASCADE"
)
_INDEX = "ix_alert_labels_name_value_alert_id"
_FOREIGN_KEY = "fk_alert_labels_alert_id_alerts"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_sqlite(_KEYED_BY_LABEL, order="name, value, alert_id")
        return
    op.drop_constraint(_FOREIGN_KEY, "alert_labels", type_="foreignkey")
    op.drop_constraint("pk_alert_labels", "alert_labels", type_="primary")
    op.drop_index(_INDEX, table_name="alert_labels")
    op.create_primary_key("pk_alert_labels", "alert_labels", ["name", "value", "alert_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_sqlite(_KEYED_BY_ALERT, order="alert_id, name")
        op.create_index(_INDEX, "alert_labels", ["name", "value", "alert_id"])
        return
    op.drop_constraint("pk_alert_labels", "alert_labels", type_="primary")
    op.execute("DELETE FROM alert_labels WHERE alert_id NOT IN (SELECT id FROM alerts)")
    op.create_primary_key("pk_alert_labels", "alert_labels", ["alert_id", "name"])
    op.create_index(_INDEX, "alert_labels", ["name", "value", "alert_id"])
    op.create_foreign_key(_FOREIGN_KEY, "alert_labels", "alerts", ["alert_id"], ["id"], ondelete="CASCADE")


def _copy_sqlite(constraints: str, *, order: str) -> None:
    """Copy the label rows into a table with `constraints`, in its key's order (pages fill in turn).

    Rows whose alert is gone (a delete made outside the receiver) are left behind.
    """
    op.execute(_SQLITE_TABLE.format(constraints=constraints))
    op.execute(
        "INSERT INTO alert_labels_new (alert_id, name, value) SELECT alert_id, name, value FROM alert_labels"
        f" WHERE alert_id IN (SELECT id FROM alerts) ORDER BY {order}"
    )
    op.execute("DROP TABLE alert_labels")
    op.execute("ALTER TABLE alert_labels_new RENAME TO alert_labels")
