"""The outbox: notifications waiting to be sent, claimed by dispatchers, recorded when done.

A claim is a lease: `claimed_until` in the future means some dispatcher is sending the row. A crash
leaves the lease to expire and the row is claimed again (delivery is at-least-once); a row recorded as
`sent` is never claimed again. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets dispatchers in several
replicas claim disjoint rows without waiting for each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.store.history import newest_first, with_links
from receiver.store.tables import alerts, notification_alerts, notifications

_n2 = notifications.alias("earlier")


@dataclass(frozen=True)
class NotificationFilter:
    status: str | None = None
    channel: str | None = None
    recipient: str | None = None
    alert_id: int | None = None


async def claim_due(conn: AsyncConnection, *, now: datetime, limit: int, lease: timedelta) -> list[dict[str, Any]]:
    """Lease up to `limit` due notifications, oldest first.

    A row waits while an earlier message to the same recipient about the same group is still pending,
    so 'resolved' never overtakes the 'firing' it threads under.
    """
    n = notifications
    earlier_pending = exists().where(
        and_(
            _n2.c.channel == n.c.channel,
            _n2.c.recipient == n.c.recipient,
            _n2.c.group_key == n.c.group_key,
            _n2.c.status == "pending",
            _n2.c.id < n.c.id,
        )
    )
    due = (
        select(n.c.id)
        .where(
            n.c.status == "pending",
            n.c.next_attempt_at <= now,
            or_(n.c.claimed_until.is_(None), n.c.claimed_until < now),
            ~earlier_pending,
        )
        .order_by(n.c.next_attempt_at, n.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=n)
    stmt = (
        update(n)
        .where(n.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + lease, attempts=n.c.attempts + 1)
        .returning(*n.c)
    )
    rows = [dict(r._mapping) for r in (await conn.execute(stmt)).all()]
    return sorted(rows, key=lambda r: r["id"])


async def covered_alerts(conn: AsyncConnection, notification_id: int) -> list[dict[str, Any]]:
    """The alerts a notification reports, each with the event (`kind`) it reports."""
    return (await covered_alerts_of(conn, [notification_id]))[notification_id]


async def covered_alerts_of(conn: AsyncConnection, notification_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """`covered_alerts` for many notifications in one query (a claimed batch)."""
    found: dict[int, list[dict[str, Any]]] = {nid: [] for nid in notification_ids}
    query = (
        select(alerts, notification_alerts.c.kind.label("event"), notification_alerts.c.notification_id)
        .join(notification_alerts, notification_alerts.c.alert_id == alerts.c.id)
        .where(notification_alerts.c.notification_id.in_(notification_ids))
        .order_by(notification_alerts.c.notification_id, alerts.c.id)
    )
    for r in (await conn.execute(query)).all():
        row = with_links(dict(r._mapping))
        found[row.pop("notification_id")].append(row)
    return found


async def thread_parent(conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any] | None:
    """The latest sent 'firing' message to the same recipient about the same group, before this one."""
    n = notifications
    query = (
        select(n)
        .where(
            n.c.channel == row["channel"],
            n.c.recipient == row["recipient"],
            n.c.group_key == row["group_key"],
            n.c.kind == "firing",
            n.c.status == "sent",
            n.c.id < row["id"],
        )
        .order_by(n.c.id.desc())
        .limit(1)
    )
    found = (await conn.execute(query)).first()
    return dict(found._mapping) if found else None


async def mark_sent_many(conn: AsyncConnection, sent: list[tuple[int, dict[str, str]]], *, now: datetime) -> None:
    """Mark notifications (id, provider_ref) sent at `now`, in one statement (executemany).

    Only rows still pending change: a row another dispatcher already finished stays as it is."""
    done = {"status": "sent", "sent_at": now, "claimed_until": None, "last_error": None, "reason": None}
    stmt = (
        update(notifications)
        .where(notifications.c.id == bindparam("b_id"), notifications.c.status == "pending")
        .values(provider_ref=bindparam("b_ref"), **done)
    )
    await conn.execute(stmt, [{"b_id": nid, "b_ref": ref} for nid, ref in sent])


async def mark_retry(
    conn: AsyncConnection, notification_id: int, *, next_attempt_at: datetime, reason: str, error: str
) -> None:
    await conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.status == "pending")
        .values(next_attempt_at=next_attempt_at, claimed_until=None, reason=reason, last_error=error)
    )


async def mark_failed(conn: AsyncConnection, notification_id: int, *, reason: str, error: str) -> None:
    await conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.status == "pending")
        .values(status="failed", claimed_until=None, next_attempt_at=None, reason=reason, last_error=error)
    )


async def requeue_failed(conn: AsyncConnection, notification_id: int, *, now: datetime) -> bool:
    """Put a failed notification back in the queue; False when it is not failed (or does not exist)."""
    result = await conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.status == "failed")
        .values(status="pending", next_attempt_at=now, claimed_until=None, attempts=0, created_at=now)
        .returning(notifications.c.id)
    )
    return result.first() is not None


async def get_notification(conn: AsyncConnection, notification_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(notifications).where(notifications.c.id == notification_id))).first()
    return dict(row._mapping) if row else None


async def alert_ids_of(conn: AsyncConnection, notification_ids: list[int]) -> dict[int, list[int]]:
    if not notification_ids:
        return {}
    query = select(notification_alerts.c.notification_id, notification_alerts.c.alert_id).where(
        notification_alerts.c.notification_id.in_(notification_ids)
    )
    found: dict[int, list[int]] = {i: [] for i in notification_ids}
    for nid, aid in (await conn.execute(query.order_by(notification_alerts.c.alert_id))).all():
        found[nid].append(aid)
    return found


async def list_notifications(
    conn: AsyncConnection, f: NotificationFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Notifications newest first, with the ids of the alerts each covers."""
    n = notifications
    conds = [n.c[name] == getattr(f, name) for name in ("status", "channel", "recipient") if getattr(f, name)]
    if f.alert_id is not None:
        conds.append(
            exists().where(
                notification_alerts.c.notification_id == n.c.id, notification_alerts.c.alert_id == f.alert_id
            )
        )
    if before_id is not None:
        conds.append(n.c.id < before_id)
    rows, last = await newest_first(conn, n, conds, limit=limit)
    ids = await alert_ids_of(conn, [r["id"] for r in rows])
    for row in rows:
        row["alert_ids"] = ids[row["id"]]
    return rows, last


async def pending_stats(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many notifications are pending, and when the oldest was created."""
    query = select(func.count(), func.min(notifications.c.created_at)).where(notifications.c.status == "pending")
    count, oldest = (await conn.execute(query)).one()
    if isinstance(oldest, str):  # SQLite's min() loses the column type
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return count, oldest
