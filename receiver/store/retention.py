"""Retention: history older than the configured age is deleted in small batches.

Small transactions keep SQLite's single write lock free most of the time, so webhooks are never held
up behind a long delete. The tables that refer to alerts and receipts have no foreign keys (see
tables.py): each batch deletes the rows that refer to what it prunes, in the same transaction, through
the indexes those tables have on the referring column. Label rows are found by the keys in each pruned
alert's labels. An event keeps the id of a pruned receipt; readers join receipts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Row, Text, and_, bindparam, delete, exists, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from receiver.store.tables import (
    alerts,
    events,
    notification_alerts,
    notifications,
    receipt_alerts,
    receipt_claims,
    receipts,
)

BATCH = 1000


@dataclass
class PruneResult:
    alerts: int = 0
    receipts: int = 0
    claims: int = 0


async def _delete_batches(engine: AsyncEngine, table, condition, returning, references, max_batches: int) -> int:  # type: ignore[no-untyped-def]
    """Delete rows of `table` matching `condition`, BATCH at a time, then `references(conn, deleted)`
    with the deleted rows' `returning` columns.

    The delete checks `condition` again: a writer may have touched a chosen row since the select (on
    PostgreSQL it holds the row's lock until its commit; the delete waits, then skips the row). The
    referring rows go after, for exactly the rows deleted, so a writer's rows that refer to a row the
    delete skipped stay; and a writer that touches a row after the delete finds it gone and retries.
    """
    removed = 0
    for _ in range(max_batches):
        async with engine.begin() as conn:
            ids = list((await conn.execute(select(table.c.id).where(condition).limit(BATCH))).scalars())
            if not ids:
                break
            stmt = delete(table).where(table.c.id.in_(ids), condition).returning(*returning)
            deleted = (await conn.execute(stmt)).all()
            if deleted:
                await references(conn, deleted)
        removed += len(deleted)
        if len(ids) < BATCH:
            break
    return removed


# Label rows by their primary key, the keys taken from the deleted alerts' labels. SQLite: the alerts
# as one JSON array of [id, labels], unpacked in this shape; with all three key columns taken from
# one json_each instead, SQLite 3.40 seeks only (name, value) and reads every alert that has the
# label, in every batch (plan checked in tests/test_observability.py). PostgreSQL: the keys as three
# arrays; unpacked from JSON in SQL, the planner guessed a hundred rows per alert and hashed the
# whole label table.
_DELETE_LABELS_SQLITE = text(
    "DELETE FROM alert_labels WHERE (name, value, alert_id) IN ("
    " SELECT label.key, label.value, a.id FROM (SELECT CAST(json_extract(value, '$[0]') AS INTEGER) AS id,"
    " json_extract(value, '$[1]') AS labels FROM json_each(:alerts)) AS a, json_each(a.labels) AS label)"
)
_DELETE_LABELS_POSTGRES = text(
    "DELETE FROM alert_labels USING unnest(:names, :values, :ids) AS label(name, value, alert_id)"
    " WHERE alert_labels.name = label.name AND alert_labels.value = label.value"
    " AND alert_labels.alert_id = label.alert_id"
).bindparams(
    bindparam("names", type_=ARRAY(Text)),
    bindparam("values", type_=ARRAY(Text)),
    bindparam("ids", type_=ARRAY(BigInteger)),
)


async def _delete_alert_references(conn: AsyncConnection, deleted: list[Row[Any]]) -> None:
    """Delete what referred to these deleted alerts ((id, labels) rows): label rows, events, links."""
    await _delete_label_rows(conn, [(alert_id, labels or {}) for alert_id, labels in deleted])
    alert_ids = [alert_id for alert_id, _ in deleted]
    for table in (events, receipt_alerts, notification_alerts):
        await conn.execute(delete(table).where(table.c.alert_id.in_(alert_ids)))


async def _delete_receipt_references(conn: AsyncConnection, deleted: list[Row[Any]]) -> None:
    """Delete what referred to these deleted receipts: their alert links, notifications and those's links."""
    receipt_ids = [receipt_id for (receipt_id,) in deleted]
    await conn.execute(delete(receipt_alerts).where(receipt_alerts.c.receipt_id.in_(receipt_ids)))
    of_receipts = select(notifications.c.id).where(notifications.c.receipt_id.in_(receipt_ids))
    await conn.execute(delete(notification_alerts).where(notification_alerts.c.notification_id.in_(of_receipts)))
    await conn.execute(delete(notifications).where(notifications.c.receipt_id.in_(receipt_ids)))


async def _delete_label_rows(conn: AsyncConnection, deleted: list[tuple[int, dict[str, str]]]) -> None:
    """Delete the label index's rows of these (alert id, labels)."""
    if conn.dialect.name != "postgresql":
        await conn.execute(_DELETE_LABELS_SQLITE, {"alerts": json.dumps(deleted)})
        return
    keys = [(name, value, alert_id) for alert_id, labels in deleted for name, value in labels.items()]
    if keys:
        names, values, ids = (list(column) for column in zip(*keys, strict=True))
        await conn.execute(_DELETE_LABELS_POSTGRES, {"names": names, "values": values, "ids": ids})


async def prune(
    engine: AsyncEngine, *, now: datetime, retention: timedelta, dedup_window: timedelta, max_batches: int = 1000
) -> PruneResult:
    """Delete alerts not seen, and receipts not received, within `retention`; expired dedup claims."""
    cutoff = now - retention
    result = PruneResult()
    old_alerts = alerts.c.last_seen_at < cutoff
    result.alerts = await _delete_batches(
        engine, alerts, old_alerts, (alerts.c.id, alerts.c.labels), _delete_alert_references, max_batches
    )
    # A receipt whose notifications are still pending stays until they are done.
    pending = exists().where(and_(notifications.c.receipt_id == receipts.c.id, notifications.c.status == "pending"))
    old_receipts = and_(receipts.c.received_at < cutoff, ~pending)
    result.receipts = await _delete_batches(
        engine, receipts, old_receipts, (receipts.c.id,), _delete_receipt_references, max_batches
    )
    async with engine.begin() as conn:
        stale = delete(receipt_claims).where(receipt_claims.c.claimed_at < now - dedup_window)
        result.claims = (await conn.execute(stale)).rowcount
    return result
