"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; tests compare the two."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite has no 64-bit autoincrement type of its own; INTEGER PRIMARY KEY is its rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC everywhere, returned timezone-aware, so SQLite and PostgreSQL agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


receipts = Table(
    "receipts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("receiver", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("duplicate", Boolean, nullable=False),
    Column("alert_count", Integer, nullable=False),
    Column("truncated_alerts", Integer, nullable=False, default=0),
    Column("notification_reason", Text),
    Column("external_url", Text, nullable=False, default=""),
    Column("group_labels", JSON, nullable=False),
    Index(None, "received_at"),
)

# One row per digest, holding when it was last accepted: the unique key is what makes two replicas
# (or two HA peers 1 ms apart) agree that only one of them stores the state as new.
receipt_claims = Table(
    "receipt_claims",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("claimed_at", UTCDateTime, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fingerprint", String(16), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("alertname", Text),
    Column("severity", Text),
    Column("model", Text),
    Column("team", Text),
    Column("receiver", Text, nullable=False),
    Column("group_key", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("generator_url", Text, nullable=False, default=""),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("last_event_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("model_info", JSON),
    Column("links", JSON, nullable=False),  # those built from the catalog and settings (receiver/enrich.py)
    Column("alertmanager_url", Text),  # the payload's externalURL, for the silence link built when read
    # One occurrence per (starts_at, fingerprint), in that order: new alerts start about now, so their
    # keys land together at the end of the index (a fingerprint is a hash: keyed by it first, every
    # new alert wrote a leaf page of its own). The same index gives a time window's ids without the
    # table (SQLite's entries carry the rowid; PostgreSQL's include id).
    Index(None, "starts_at", "fingerprint", unique=True, postgresql_include=["id"]),
    # Newest first, optionally narrowed by one column: each index serves one filter with keyset paging.
    # alertname, severity and model are copies of labels: the label index serves those filters.
    Index(None, "status", "id"),
    Index(None, "team", "id"),
    Index(None, "receiver", "id"),
    Index(None, "last_seen_at"),  # retention finds what to prune without scanning the table
)

# Labels as rows, so a matcher on any label is an index lookup rather than a scan of JSON. The rows
# are their primary key (name, value, alert_id): on SQLite one B-tree (WITHOUT ROWID), on PostgreSQL
# the heap and one index. Nothing reads them by alert: an alert's labels are its `labels` column, and
# retention deletes an alert's label rows by their keys, taken from that column
# (store/retention.py); hence no foreign key, whose checks would need an index on alert_id (another
# B-tree to write for every label: about an eighth of the ingest path's time on SQLite).
alert_labels = Table(
    "alert_labels",
    metadata,
    Column("alert_id", Id, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("name", "value", "alert_id"),
    sqlite_with_rowid=False,
)

# The tables below refer to alerts, receipts and notifications by id without foreign keys. On
# PostgreSQL each foreign key ran a trigger per inserted row (a query that also locks the parent row):
# a fifth of the database's CPU while ingesting, about 10 % of webhooks/s. Retention deletes the rows
# that refer to what it prunes, in the same transaction (store/retention.py), and ingest confirms
# that the alerts it refers to still exist (alert_writes.touch). events.receipt_id is left as it is
# when its receipt is pruned; readers join receipts (a foreign key's SET NULL needed a scan of events
# per pruned receipt: no index serves receipt_id).
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_id", Id, nullable=False),
    Column("receipt_id", Id),
    Column("kind", String(16), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "alert_id", "id"),
)

receipt_alerts = Table(
    "receipt_alerts",
    metadata,
    Column("receipt_id", Id, primary_key=True),
    Column("alert_id", Id, primary_key=True),
    Index(None, "alert_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("receipt_id", Id, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("claimed_until", UTCDateTime),
    Column("last_error", Text),
    Column("reason", String(64)),
    Column("provider_ref", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("receipt_id", "channel", "recipient", "group_key"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "channel", "recipient", "group_key"),
)

notification_alerts = Table(
    "notification_alerts",
    metadata,
    Column("notification_id", Id, primary_key=True),
    Column("alert_id", Id, primary_key=True),
    Column("kind", String(16), nullable=False),  # the alert's event this message reports
    Index(None, "alert_id"),
)

# Slack recipient (email or user id) -> DM channel id, so lookups survive restarts.
slack_directory = Table(
    "slack_directory",
    metadata,
    Column("recipient", Text, primary_key=True),
    Column("dm_channel", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
