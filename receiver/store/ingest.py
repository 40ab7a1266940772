"""The write path: one receipt, its alerts, their events and the outbox rows, in the caller's transaction.

Every decision that must hold across processes is a statement the database arbitrates:
the receipt claim is an upsert on a unique digest, new occurrences are `INSERT ... ON CONFLICT DO
NOTHING` on (fingerprint, starts_at), and state changes are `UPDATE ... WHERE status = 'firing'
RETURNING id`, so two replicas that race on the same alert record its event once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from receiver.dedup import AlertState, EventKind, decide_alert_event
from receiver.schemas import WebhookAlert, WebhookPayload
from receiver.store.tables import (
    alert_labels,
    alerts,
    events,
    notification_alerts,
    notifications,
    receipt_alerts,
    receipt_claims,
    receipts,
)

_CHUNK = 500  # rows per IN (...) list: well inside SQLite's and asyncpg's parameter limits


@dataclass(frozen=True)
class IncomingAlert:
    """An alert from the payload with what ingest derived for it (enrichment, recipients)."""

    alert: WebhookAlert
    model: str | None = None
    team: str | None = None
    model_info: dict[str, Any] | None = None
    links: dict[str, str] = field(default_factory=dict)
    recipients: tuple[tuple[str, str], ...] = ()  # (channel, recipient)


@dataclass(frozen=True)
class IncomingReceipt:
    payload: WebhookPayload
    digest: str
    alerts: Sequence[IncomingAlert]


@dataclass
class IngestOutcome:
    receipt_id: int
    duplicate: bool
    alert_ids: list[int] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    notification_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class IngestPolicy:
    window: timedelta
    notify_kinds: frozenset[EventKind]


def _insert(conn: Connection, table):  # type: ignore[no-untyped-def]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store_receipt(conn: Connection, incoming: IncomingReceipt, *, now: datetime, policy: IngestPolicy) -> IngestOutcome:
    """Record one webhook delivery and everything it changes; returns what happened."""
    fresh = _claim_digest(conn, incoming.digest, now=now, window=policy.window)
    receipt_id = _insert_receipt(conn, incoming, now=now, duplicate=not fresh)
    outcome = IngestOutcome(receipt_id=receipt_id, duplicate=not fresh)
    by_key = {item.alert.key: item for item in incoming.alerts}  # a repeated alert counts once
    if not fresh:
        # Nothing changes, but the alerts' history shows this delivery too (HA peers, retries).
        known = _load_states(conn, list(by_key))
        _link_receipt(conn, receipt_id, [alert_id for alert_id, _ in known.values()])
        return outcome
    ids, new_keys = _insert_new_alerts(conn, incoming.payload, by_key, now=now)
    changes = _apply_transitions(conn, by_key, ids, new_keys, now=now, window=policy.window)
    outcome.alert_ids = list(ids.values())
    _link_receipt(conn, receipt_id, list(ids.values()))
    _insert_rows(
        conn,
        events,
        [
            {"alert_id": ids[key], "receipt_id": receipt_id, "kind": kind.value, "reason": reason, "at": now}
            for key, (kind, reason) in changes.items()
        ],
    )
    outcome.events.update(kind.value for kind, _ in changes.values())
    notify = {key: kind for key, (kind, _) in changes.items() if kind in policy.notify_kinds}
    outcome.notification_ids = _queue_notifications(conn, incoming.payload, receipt_id, by_key, ids, notify, now=now)
    return outcome


def _link_receipt(conn: Connection, receipt_id: int, alert_ids: list[int]) -> None:
    _insert_rows(conn, receipt_alerts, [{"receipt_id": receipt_id, "alert_id": i} for i in alert_ids])


def _claim_digest(conn: Connection, digest: str, *, now: datetime, window: timedelta) -> bool:
    """True when this digest was not accepted within the window (and is now claimed by us)."""
    stmt = _insert(conn, receipt_claims).values(digest=digest, claimed_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[receipt_claims.c.digest],
        set_={"claimed_at": stmt.excluded.claimed_at},
        where=receipt_claims.c.claimed_at <= now - window,
    ).returning(receipt_claims.c.digest)
    return (conn.execute(stmt)).first() is not None


def _insert_receipt(conn: Connection, incoming: IncomingReceipt, *, now: datetime, duplicate: bool) -> int:
    p = incoming.payload
    stmt = (
        receipts.insert()
        .values(
            received_at=now,
            receiver=p.receiver,
            group_key=p.group_key,
            status=p.status,
            digest=incoming.digest,
            duplicate=duplicate,
            alert_count=len(p.alerts),
            truncated_alerts=p.truncated_alerts,
            notification_reason=p.notification_reason,
            external_url=p.external_url,
            group_labels=p.group_labels,
        )
        .returning(receipts.c.id)
    )
    return (conn.execute(stmt)).scalar_one()


def _alert_row(payload: WebhookPayload, item: IncomingAlert, now: datetime) -> dict[str, Any]:
    a = item.alert
    resolved = a.status == "resolved"
    return {
        "fingerprint": a.fingerprint,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "status": a.status,
        "alertname": a.labels.get("alertname"),
        "severity": a.labels.get("severity"),
        "model": item.model,
        "team": item.team,
        "receiver": payload.receiver,
        "group_key": payload.group_key,
        "labels": a.labels,
        "annotations": a.annotations,
        "generator_url": a.generator_url,
        "first_seen_at": now,
        "last_seen_at": now,
        "last_event_at": now,
        "resolved_at": now if resolved else None,
        "model_info": item.model_info,
        "links": item.links,
    }


def _insert_new_alerts(
    conn: Connection, payload: WebhookPayload, by_key: dict[tuple[str, datetime], IncomingAlert], *, now: datetime
) -> tuple[dict[tuple[str, datetime], int], set[tuple[str, datetime]]]:
    """Insert occurrences not seen before; map every key of the payload to its alert id."""
    rows = [_alert_row(payload, item, now) for item in sorted(by_key.values(), key=lambda i: i.alert.key)]
    stmt = (
        _insert(conn, alerts)
        .on_conflict_do_nothing(index_elements=[alerts.c.fingerprint, alerts.c.starts_at])
        .returning(alerts.c.id, alerts.c.fingerprint, alerts.c.starts_at)
    )
    ids: dict[tuple[str, datetime], int] = {}
    for chunk in _chunks(rows):
        for row in (conn.execute(stmt, list(chunk))).all():
            ids[(row.fingerprint, row.starts_at)] = row.id
    new_keys = set(ids)
    _insert_rows(
        conn,
        alert_labels,
        [
            {"alert_id": ids[key], "name": name, "value": value}
            for key in new_keys
            for name, value in by_key[key].alert.labels.items()
        ],
    )
    return ids, new_keys


def _load_states(
    conn: Connection, keys: Sequence[tuple[str, datetime]]
) -> dict[tuple[str, datetime], tuple[int, AlertState]]:
    wanted = set(keys)
    found: dict[tuple[str, datetime], tuple[int, AlertState]] = {}
    fingerprints = sorted({fp for fp, _ in keys})
    for chunk in _chunks(fingerprints):
        query = select(
            alerts.c.id, alerts.c.fingerprint, alerts.c.starts_at, alerts.c.status, alerts.c.last_event_at
        ).where(alerts.c.fingerprint.in_(chunk))
        for row in (conn.execute(query)).all():
            key = (row.fingerprint, row.starts_at)
            if key in wanted:
                found[key] = (row.id, AlertState(row.status, row.last_event_at))
    return found


def _apply_transitions(
    conn: Connection,
    by_key: dict[tuple[str, datetime], IncomingAlert],
    ids: dict[tuple[str, datetime], int],
    new_keys: set[tuple[str, datetime]],
    *,
    now: datetime,
    window: timedelta,
) -> dict[tuple[str, datetime], tuple[EventKind, str]]:
    """Decide each alert's event; for existing ones, let a guarded UPDATE confirm it."""
    changes: dict[tuple[str, datetime], tuple[EventKind, str]] = {}
    for key in new_keys:
        decision = decide_alert_event(None, by_key[key].alert.status, now=now, window=window)
        assert decision.event is not None
        changes[key] = (decision.event, decision.reason)
    existing = _load_states(conn, [k for k in by_key if k not in new_keys])
    wanted: dict[EventKind, dict[int, tuple[tuple[str, datetime], str]]] = defaultdict(dict)
    for key, (alert_id, state) in existing.items():
        ids[key] = alert_id
        decision = decide_alert_event(state, by_key[key].alert.status, now=now, window=window)
        if decision.event is not None:
            wanted[decision.event][alert_id] = (key, decision.reason)
    confirmed = _resolve(conn, wanted[EventKind.RESOLVED], by_key, now=now)
    confirmed |= _repeat(conn, wanted[EventKind.REPEAT], now=now, window=window)
    for kind, candidates in wanted.items():
        for alert_id, (key, reason) in candidates.items():
            if alert_id in confirmed:
                changes[key] = (kind, reason)
    _touch(conn, [i for i in (ids[k] for k in existing) if i not in confirmed], now=now)
    return changes


def _resolve(
    conn: Connection,
    candidates: dict[int, tuple[tuple[str, datetime], str]],
    by_key: dict[tuple[str, datetime], IncomingAlert],
    *,
    now: datetime,
) -> set[int]:
    """Mark firing alerts resolved; only rows still firing count (another replica may have won)."""
    won: set[int] = set()
    for chunk in _chunks(sorted(candidates)):
        stmt = (
            update(alerts)
            .where(and_(alerts.c.id.in_(chunk), alerts.c.status == "firing"))
            .values(status="resolved", resolved_at=now, last_event_at=now, last_seen_at=now)
            .returning(alerts.c.id)
        )
        won |= set((conn.execute(stmt)).scalars())
    details = []
    for alert_id in sorted(won):
        item = by_key[candidates[alert_id][0]]
        details.append(
            {"b_id": alert_id, "b_ends": item.alert.ends_at, "b_ann": item.alert.annotations, "b_links": item.links}
        )
    if details:
        stmt = (
            update(alerts)
            .where(alerts.c.id == bindparam("b_id"))
            .values(ends_at=bindparam("b_ends"), annotations=bindparam("b_ann"), links=bindparam("b_links"))
        )
        conn.execute(stmt, details)
    return won


def _repeat(
    conn: Connection, candidates: dict[int, tuple[tuple[str, datetime], str]], *, now: datetime, window: timedelta
) -> set[int]:
    won: set[int] = set()
    for chunk in _chunks(sorted(candidates)):
        stmt = (
            update(alerts)
            .where(and_(alerts.c.id.in_(chunk), alerts.c.status == "firing", alerts.c.last_event_at <= now - window))
            .values(last_event_at=now, last_seen_at=now)
            .returning(alerts.c.id)
        )
        won |= set((conn.execute(stmt)).scalars())
    return won


def _touch(conn: Connection, alert_ids: list[int], *, now: datetime) -> None:
    for chunk in _chunks(sorted(alert_ids)):
        conn.execute(update(alerts).where(alerts.c.id.in_(chunk)).values(last_seen_at=now))


def _insert_rows(conn: Connection, table, rows: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    if rows:
        conn.execute(table.insert(), rows)


def _queue_notifications(
    conn: Connection,
    payload: WebhookPayload,
    receipt_id: int,
    by_key: dict[tuple[str, datetime], IncomingAlert],
    ids: dict[tuple[str, datetime], int],
    notify: dict[tuple[str, datetime], EventKind],
    *,
    now: datetime,
) -> list[int]:
    """One outbox row per (channel, recipient) covering all of that recipient's changed alerts."""
    covered: dict[tuple[str, str], list[tuple[str, datetime]]] = defaultdict(list)
    for key in sorted(notify):
        for target in by_key[key].recipients:
            covered[target].append(key)
    if not covered:
        return []
    targets = sorted(covered)
    rows = [
        {
            "channel": channel,
            "recipient": recipient,
            "kind": _message_kind(notify[k] for k in covered[(channel, recipient)]),
            "group_key": payload.group_key,
            "receipt_id": receipt_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for channel, recipient in targets
    ]
    stmt = notifications.insert().returning(notifications.c.id, sort_by_parameter_order=True)
    notification_ids = list((conn.execute(stmt, rows)).scalars())
    links = [
        {"notification_id": nid, "alert_id": ids[key], "kind": notify[key].value}
        for nid, target in zip(notification_ids, targets, strict=True)
        for key in covered[target]
    ]
    _insert_rows(conn, notification_alerts, links)
    return notification_ids


def _message_kind(kinds: Iterable[EventKind]) -> str:
    """A message is 'resolved' only when everything it reports resolved; otherwise it is about firing."""
    kinds = set(kinds)
    if kinds == {EventKind.RESOLVED}:
        return "resolved"
    if kinds == {EventKind.REPEAT}:
        return "repeat"
    return "firing"
