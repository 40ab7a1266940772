"""Retention: history older than the configured age is deleted in small batches.

Small transactions keep SQLite's single write lock free most of the time, so webhooks are never held
up behind a long delete; foreign keys cascade to labels, events and links.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.tables import alerts, notifications, receipt_claims, receipts

BATCH = 1000


@dataclass
class PruneResult:
    alerts: int = 0
    receipts: int = 0
    claims: int = 0


async def _delete_batches(engine: AsyncEngine, table, condition, max_batches: int) -> int:  # type: ignore[no-untyped-def]
    removed = 0
    for _ in range(max_batches):
        ids = select(table.c.id).where(condition).limit(BATCH).scalar_subquery()
        async with engine.begin() as conn:
            count = (await conn.execute(delete(table).where(table.c.id.in_(ids)))).rowcount
        removed += count
        if count < BATCH:
            break
    return removed


async def prune(
    engine: AsyncEngine, *, now: datetime, retention: timedelta, dedup_window: timedelta, max_batches: int = 1000
) -> PruneResult:
    """Delete alerts not seen, and receipts not received, within `retention`; expired dedup claims."""
    cutoff = now - retention
    result = PruneResult()
    result.alerts = await _delete_batches(engine, alerts, alerts.c.last_seen_at < cutoff, max_batches)
    # A receipt whose notifications are still pending stays until they are done.
    pending = exists().where(and_(notifications.c.receipt_id == receipts.c.id, notifications.c.status == "pending"))
    result.receipts = await _delete_batches(
        engine, receipts, and_(receipts.c.received_at < cutoff, ~pending), max_batches
    )
    async with engine.begin() as conn:
        stale = delete(receipt_claims).where(receipt_claims.c.claimed_at < now - dedup_window)
        result.claims = (await conn.execute(stale)).rowcount
    return result
