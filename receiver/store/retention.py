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

from sqlalchemy import ARRAY, BigInteger, Text, and_, bindparam, delete, exists, select, text
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


async def _delete_batches(engine: AsyncEngine, table, condition, max_batches: int, references) -> int:  # type: ignore[no-untyped-def]
    """Delete rows of `table` matching `condition`, BATCH at a time, each after `references(conn, ids)`."""
    removed = 0
    for _ in range(max_batches):
        async with engine.begin() as conn:
            ids = list((await conn.execute(select(table.c.id).where(condition).limit(BATCH))).scalars())
            if not ids:
                break
            await references(conn, ids)
            count = (await conn.execute(delete(table).where(table.c.id.in_(ids)))).rowcount
        removed += count
        if count < BATCH:
            break
    return removed


# The label rows of the given alerts, found by their primary key from each alert's labels column.
_DELETE_LABELS_SQLITE = text(
    "DELETE FROM alert_labels WHERE (name, value, alert_id) IN ("
    " SELECT label.key, label.value, alerts.id FROM alerts, json_each(alerts.labels) AS label"
    " WHERE alerts.id IN (SELECT value FROM json_each(:ids)))"
)
# On PostgreSQL the keys travel as three arrays: with the labels unpacked in SQL instead, the planner
# guesses a hundred labels per alert and hashes the whole label table rather than seeking each key.
_DELETE_LABELS_POSTGRES = text(
    "DELETE FROM alert_labels USING unnest(:names, :values, :ids) AS label(name, value, alert_id)"
    " WHERE alert_labels.name = label.name AND alert_labels.value = label.value"
    " AND alert_labels.alert_id = label.alert_id"
).bindparams(
    bindparam("names", type_=ARRAY(Text)),
    bindparam("values", type_=ARRAY(Text)),
    bindparam("ids", type_=ARRAY(BigInteger)),
)


async def _delete_alert_references(conn: AsyncConnection, alert_ids: list[int]) -> None:
    """Delete what refers to these alerts (before the alerts themselves): label rows, events, links."""
    await _delete_label_rows(conn, alert_ids)
    for table in (events, receipt_alerts, notification_alerts):
        await conn.execute(delete(table).where(table.c.alert_id.in_(alert_ids)))


async def _delete_receipt_references(conn: AsyncConnection, receipt_ids: list[int]) -> None:
    """Delete what refers to these receipts: their alert links, notifications and those's alert links."""
    await conn.execute(delete(receipt_alerts).where(receipt_alerts.c.receipt_id.in_(receipt_ids)))
    of_receipts = select(notifications.c.id).where(notifications.c.receipt_id.in_(receipt_ids))
    await conn.execute(delete(notification_alerts).where(notification_alerts.c.notification_id.in_(of_receipts)))
    await conn.execute(delete(notifications).where(notifications.c.receipt_id.in_(receipt_ids)))


async def _delete_label_rows(conn: AsyncConnection, alert_ids: list[int]) -> None:
    """Delete the label index's rows of these alerts."""
    if conn.dialect.name != "postgresql":
        await conn.execute(_DELETE_LABELS_SQLITE, {"ids": json.dumps(alert_ids)})
        return
    stored = await conn.execute(select(alerts.c.id, alerts.c.labels).where(alerts.c.id.in_(alert_ids)))
    keys = [(name, value, alert_id) for alert_id, labels in stored for name, value in (labels or {}).items()]
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
    result.alerts = await _delete_batches(engine, alerts, old_alerts, max_batches, _delete_alert_references)
    # A receipt whose notifications are still pending stays until they are done.
    pending = exists().where(and_(notifications.c.receipt_id == receipts.c.id, notifications.c.status == "pending"))
    result.receipts = await _delete_batches(
        engine, receipts, and_(receipts.c.received_at < cutoff, ~pending), max_batches, _delete_receipt_references
    )
    async with engine.begin() as conn:
        stale = delete(receipt_claims).where(receipt_claims.c.claimed_at < now - dedup_window)
        result.claims = (await conn.execute(stale)).rowcount
    return result
