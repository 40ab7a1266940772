"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 17:49:54.166914
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiver.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("alertname", sa.Text(), nullable=True),
        sa.Column("severity", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("team", sa.Text(), nullable=True),
        sa.Column("receiver", sa.Text(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_event_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("model_info", sa.JSON(), nullable=True),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("fingerprint", "starts_at", name=op.f("uq_alerts_fingerprint_starts_at")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_alertname_id"), ["alertname", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_model_id"), ["model", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_receiver_id"), ["receiver", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_severity_id"), ["severity", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_starts_at"), ["starts_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_status_id"), ["status", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_team_id"), ["team", "id"], unique=False)

    op.create_table(
        "receipt_claims",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_receipt_claims")),
    )
    op.create_table(
        "receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("receiver", sa.Text(), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("truncated_alerts", sa.Integer(), nullable=False),
        sa.Column("notification_reason", sa.Text(), nullable=True),
        sa.Column("external_url", sa.Text(), nullable=False),
        sa.Column("group_labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipts_received_at"), ["received_at"], unique=False)

    op.create_table(
        "slack_directory",
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("dm_channel", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("recipient", name=op.f("pk_slack_directory")),
    )
    op.create_table(
        "alert_labels",
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_labels_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alert_id", "name", name=op.f("pk_alert_labels")),
    )
    with op.batch_alter_table("alert_labels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_labels_name_value_alert_id"), ["name", "value", "alert_id"], unique=False
        )

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("receipt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_events_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"], ["receipts.id"], name=op.f("fk_events_receipt_id_receipts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_alert_id_id"), ["alert_id", "id"], unique=False)

    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("receipt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("provider_ref", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["receipts.id"],
            name=op.f("fk_notifications_receipt_id_receipts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "receipt_id",
            "channel",
            "recipient",
            "group_key",
            name=op.f("uq_notifications_receipt_id_channel_recipient_group_key"),
        ),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifications_channel_recipient_group_key"),
            ["channel", "recipient", "group_key"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_status_next_attempt_at"), ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "receipt_alerts",
        sa.Column("receipt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_receipt_alerts_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["receipts.id"],
            name=op.f("fk_receipt_alerts_receipt_id_receipts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("receipt_id", "alert_id", name=op.f("pk_receipt_alerts")),
    )
    with op.batch_alter_table("receipt_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipt_alerts_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "notification_alerts",
        sa.Column("notification_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_notification_alerts_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_alerts_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "alert_id", name=op.f("pk_notification_alerts")),
    )
    with op.batch_alter_table("notification_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_alerts_alert_id"), ["alert_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("notification_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_alerts_alert_id"))

    op.drop_table("notification_alerts")
    with op.batch_alter_table("receipt_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipt_alerts_alert_id"))

    op.drop_table("receipt_alerts")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_status_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_channel_recipient_group_key"))

    op.drop_table("notifications")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_alert_id_id"))

    op.drop_table("events")
    with op.batch_alter_table("alert_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_labels_name_value_alert_id"))

    op.drop_table("alert_labels")
    op.drop_table("slack_directory")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipts_received_at"))

    op.drop_table("receipts")
    op.drop_table("receipt_claims")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_team_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_status_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_starts_at"))
        batch_op.drop_index(batch_op.f("ix_alerts_severity_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_receiver_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_model_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_alertname_id"))

    op.drop_table("alerts")
