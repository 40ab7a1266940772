"""The write path: a batch of receipts, their alerts, events and outbox rows, in one transaction.

Each statement covers the whole batch (set-based), so a group commit of many webhooks costs a handful of
statements. Every decision that must hold across processes is still one the database arbitrates: the
receipt claim is an upsert on a unique digest, new occurrences are `INSERT ... ON CONFLICT DO NOTHING`
on (starts_at, fingerprint), and state changes are `UPDATE ... WHERE status = 'firing' RETURNING id`,
so two replicas racing on the same alert record its event once.

Within a batch, receipts are applied in arrival order against an in-memory copy of the alerts' states,
which gives the same result as one transaction per receipt.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from receiver.dedup import AlertState, EventKind, decide_alert_event
from receiver.schemas import WebhookAlert, WebhookPayload
from receiver.store import alert_writes
from receiver.store.alert_writes import Key
from receiver.store.bulk import Codec, UpdateIf, insert_many, insert_returning, insert_returning_ids
from receiver.store.tables import (
    alert_labels,
    events,
    notification_alerts,
    notifications,
    receipt_alerts,
    receipt_claims,
    receipts,
)


class IncomingAlert(NamedTuple):
    """An alert from the payload with what ingest derived for it (enrichment, recipients).

    Plain values only (no pydantic models), so a receipt crosses to the writer process as tuples
    (receiver/writer_process.py) instead of being pickled object by object.
    """

    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    model: str | None
    team: str | None
    model_info: dict[str, Any] | None
    links: dict[str, str]
    recipients: tuple[tuple[str, str], ...]  # (channel, recipient)
    alertmanager_url: str | None  # the payload's externalURL: the silence link is built from it when read
    # The JSON columns as text, serialised where the alert is prepared (the request's side), so the
    # writer only binds them.
    json_text: dict[str, str | None]

    @classmethod
    def from_alert(
        cls,
        alert: WebhookAlert,
        *,
        model: str | None = None,
        team: str | None = None,
        model_info: dict[str, Any] | None = None,
        links: dict[str, str] | None = None,
        recipients: tuple[tuple[str, str], ...] = (),
        alertmanager_url: str | None = None,
    ) -> IncomingAlert:
        item = cls(
            alert.fingerprint,
            alert.starts_at,
            alert.ends_at,
            alert.status,
            alert.labels,
            alert.annotations,
            alert.generator_url,
            model,
            team,
            model_info,
            links or {},
            recipients,
            alertmanager_url,
            {},
        )
        item.json_text.update({name: Codec.json(value) for name, value in item.documents().items()})
        return item

    @property
    def key(self) -> Key:
        return (self.fingerprint, self.starts_at)

    def documents(self) -> dict[str, Any]:
        """What the alert's JSON columns hold."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "model_info": self.model_info,
            "links": self.links,
        }


class IncomingReceipt(NamedTuple):
    """One webhook delivery, prepared: the payload's group fields, its digest and its alerts."""

    receiver: str
    group_key: str
    status: str
    truncated_alerts: int
    notification_reason: str | None
    external_url: str
    group_labels: dict[str, str]
    digest: str
    alerts: tuple[IncomingAlert, ...]

    @classmethod
    def from_payload(cls, payload: WebhookPayload, digest: str, alerts: Sequence[IncomingAlert]) -> IncomingReceipt:
        p = payload
        return cls(
            p.receiver, p.group_key, p.status, p.truncated_alerts, p.notification_reason, p.external_url,
            p.group_labels, digest, tuple(alerts),
        )  # fmt: skip

    def by_key(self) -> dict[Key, IncomingAlert]:
        """The payload's alerts by occurrence; an alert repeated inside one payload counts once."""
        return {item.key: item for item in self.alerts}


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


class ConcurrentInsert(Exception):
    """Another writer stored an occurrence (or retention deleted one) after we read them; retry the receipts
    alone."""


# PostgreSQL refuses a B-tree entry over 2,704 bytes: one label row or notification group key that
# long would fail its webhook on every retry. Such labels stay in the alert's labels (shown, sent) but
# get no row in the label index, on both databases so that both answer matchers alike (as absent);
# such group keys are shortened for the notifications index (_fit_index).
INDEX_ENTRY_BYTES = 2000
INDEX_ENTRY_CHARS = INDEX_ENTRY_BYTES // 4  # at most 4 bytes per character: no need to encode


def _indexed_labels(item: IncomingAlert) -> Iterable[tuple[str, str]]:
    """The alert's labels that fit the label index (all of them unless its labels' JSON is long)."""
    labels = item.labels.items()
    if len(item.json_text["labels"] or "") <= INDEX_ENTRY_CHARS:  # no label can be too long
        return labels
    return [(n, v) for n, v in labels if len(n.encode()) + len(v.encode()) <= INDEX_ENTRY_BYTES]


def _fit_index(text: str) -> str:
    """`text`, or when it is too long for an index entry, its start and a digest of the whole.

    notifications.group_key is indexed (threading, and one message per receipt and recipient); the
    digest keeps two long keys apart and the same key equal, which is all those lookups need.
    """
    if len(text) <= INDEX_ENTRY_CHARS or len(text.encode()) <= INDEX_ENTRY_BYTES:
        return text
    return f"{text[: INDEX_ENTRY_CHARS - 40]}…{hashlib.sha256(text.encode()).hexdigest()[:32]}"


_KIND_TEXT = {kind: kind.value for kind in EventKind}  # Enum's .value is a descriptor call per use


@dataclass
class _Change:
    """One event decided for one receipt."""

    receipt: int  # index in the batch
    key: Key
    kind: EventKind
    reason: str


@dataclass
class _Plan:
    """What a batch writes, decided in memory before the statements run."""

    new_rows: dict[Key, dict[str, Any]] = field(default_factory=dict)  # alerts columns, JSON as text
    new_labels: dict[Key, Iterable[tuple[str, str]]] = field(default_factory=dict)  # the label index's rows
    changes: list[_Change] = field(default_factory=list)
    resolve_details: dict[Key, dict[str, Any]] = field(default_factory=dict)  # existing alerts resolving
    repeats: set[Key] = field(default_factory=set)  # existing alerts with a reminder


def store_receipt(conn: Connection, incoming: IncomingReceipt, *, now: datetime, policy: IngestPolicy) -> IngestOutcome:
    """Record one webhook delivery (a batch of one)."""
    return store_batch(conn, [incoming], now=now, policy=policy)[0]


def store_batch(
    conn: Connection, batch: Sequence[IncomingReceipt], *, now: datetime, policy: IngestPolicy
) -> list[IngestOutcome]:
    """Record webhook deliveries in arrival order; returns what happened to each."""
    fresh = _claim(conn, batch, now=now, window=policy.window)
    receipt_ids = _insert_receipts(conn, batch, fresh, now=now)
    outcomes = [IngestOutcome(receipt_id=rid, duplicate=not f) for rid, f in zip(receipt_ids, fresh, strict=True)]
    keyed = [r.by_key() for r in batch]
    existing = alert_writes.load_states(conn, {key for keys in keyed for key in keys})
    plan = _plan(batch, keyed, fresh, existing, now=now, window=policy.window)
    ids = {key: alert_id for key, (alert_id, _) in existing.items()}
    # Rows in key order (and claims in digest order, in _claim): two PostgreSQL writers inserting the
    # same occurrences (HA peers' deliveries) then take their row locks in the same order instead of
    # deadlocking until the database aborts one of them.
    inserted = alert_writes.insert_new(conn, [plan.new_rows[key] for key in sorted(plan.new_rows)])
    if len(inserted) != len(plan.new_rows):
        raise ConcurrentInsert("an alert occurrence was stored concurrently")
    ids.update(inserted)
    confirmed = _apply_transitions(conn, plan, ids, now=now, window=policy.window)
    changes = [c for c in plan.changes if c.key in inserted or ids[c.key] in confirmed[c.kind]]
    _write_rows(conn, plan, keyed, receipt_ids, inserted, ids, changes, now=now)
    for change in changes:
        outcomes[change.receipt].events[_KIND_TEXT[change.kind]] += 1
    for outcome, keys in zip(outcomes, keyed, strict=True):
        outcome.alert_ids = [ids[k] for k in keys if k in ids] if not outcome.duplicate else []
    notified = [c for c in changes if c.kind in policy.notify_kinds]
    for index, nid in _queue_notifications(conn, batch, keyed, receipt_ids, ids, notified, now=now):
        outcomes[index].notification_ids.append(nid)
    return outcomes


def _claim(conn: Connection, batch: Sequence[IncomingReceipt], *, now: datetime, window: timedelta) -> list[bool]:
    """Which receipts are new: the first of each digest, when no claim on it is younger than the window."""
    codec = Codec(conn)
    stamp = codec.time(now)
    rows = [(digest, stamp) for digest in sorted({r.digest for r in batch})]
    expired = UpdateIf(("claimed_at",), "receipt_claims.claimed_at <= {}", codec.time(now - window))
    columns = ("digest", "claimed_at")
    returned = insert_returning(
        conn, receipt_claims, columns, rows, conflict=("digest",), returning=("digest",), update=expired
    )
    claimed = {digest for (digest,) in returned}
    first: dict[str, int] = {}
    return [r.digest in claimed and first.setdefault(r.digest, i) == i for i, r in enumerate(batch)]


_RECEIPT_COLUMNS = (
    "received_at", "receiver", "group_key", "status", "digest", "duplicate", "alert_count", "truncated_alerts",
    "notification_reason", "external_url", "group_labels",
)  # fmt: skip


def _insert_receipts(
    conn: Connection, batch: Sequence[IncomingReceipt], fresh: list[bool], *, now: datetime
) -> list[int]:
    codec = Codec(conn)
    stamp = codec.time(now)
    rows = [
        (
            stamp,
            r.receiver,
            r.group_key,
            r.status,
            r.digest,
            not is_fresh,
            len(r.alerts),
            r.truncated_alerts,
            r.notification_reason,
            r.external_url,
            codec.json(r.group_labels),
        )  # fmt: skip
        for r, is_fresh in zip(batch, fresh, strict=True)
    ]
    return insert_returning_ids(conn, receipts, _RECEIPT_COLUMNS, rows)


def _alert_row(receipt: IncomingReceipt, item: IncomingAlert, now: datetime) -> dict[str, Any]:
    a = item
    return {
        "fingerprint": a.fingerprint,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "status": a.status,
        "alertname": a.labels.get("alertname"),
        "severity": a.labels.get("severity"),
        "model": item.model,
        "team": item.team,
        "receiver": receipt.receiver,
        "group_key": receipt.group_key,
        **item.json_text,
        "generator_url": a.generator_url,
        "alertmanager_url": item.alertmanager_url,
        "first_seen_at": now,
        "last_seen_at": now,
        "last_event_at": now,
        "resolved_at": now if a.status == "resolved" else None,
    }


def _plan(
    batch: Sequence[IncomingReceipt],
    keyed: list[dict[Key, IncomingAlert]],
    fresh: list[bool],
    existing: dict[Key, tuple[int, AlertState]],
    *,
    now: datetime,
    window: timedelta,
) -> _Plan:
    """Apply the fresh receipts in order to an in-memory copy of the states; decide every event."""
    plan = _Plan()
    states: dict[Key, AlertState] = {key: state for key, (_, state) in existing.items()}
    for index, (receipt, by_key) in enumerate(zip(batch, keyed, strict=True)):
        if not fresh[index]:
            continue
        for key in sorted(by_key):
            item = by_key[key]
            decision = decide_alert_event(states.get(key), item.status, now=now, window=window)
            if key not in states:
                plan.new_rows[key] = _alert_row(receipt, item, now)
                plan.new_labels[key] = _indexed_labels(item)
            elif decision.event is EventKind.RESOLVED and key in plan.new_rows:
                plan.new_rows[key].update(_alert_row(receipt, item, now), first_seen_at=now)
                plan.new_labels[key] = _indexed_labels(item)
            elif decision.event is EventKind.RESOLVED:
                plan.resolve_details[key] = {
                    "b_ends": item.ends_at,
                    "b_ann": item.annotations,
                    "b_links": item.links,
                    "b_am": item.alertmanager_url,
                }
            elif decision.event is EventKind.REPEAT and key not in plan.new_rows:
                plan.repeats.add(key)
            if decision.event is not None:
                plan.changes.append(_Change(index, key, decision.event, decision.reason))
                states[key] = AlertState("resolved" if decision.event is EventKind.RESOLVED else "firing", now)
            elif key not in states:
                states[key] = AlertState(item.status, now)
    return plan


def _apply_transitions(
    conn: Connection, plan: _Plan, ids: dict[Key, int], *, now: datetime, window: timedelta
) -> dict[EventKind, set[int]]:
    """Run the guarded updates for alerts that existed before the batch; the ids each one changed.

    Retention may have deleted one of them since `load_states` (on PostgreSQL, where it does not wait
    for the writer's lock): then ConcurrentInsert, and the retry stores it as new.

    Touching every existing alert first, in id order, costs a second update of those that then
    resolve or repeat, but it takes all of the batch's row locks in one ascending order: two
    PostgreSQL writers whose batches share alerts cannot lock them crosswise and deadlock.
    """
    existing = {i for k, i in ids.items() if k not in plan.new_rows}
    if len(alert_writes.touch(conn, existing, now=now)) != len(existing):
        raise ConcurrentInsert("an alert was deleted concurrently")
    repeated = alert_writes.repeat(conn, (ids[k] for k in plan.repeats), now=now, window=window)
    details = {ids[key]: values for key, values in plan.resolve_details.items()}
    resolved = alert_writes.resolve(conn, details, now=now)
    return {EventKind.REPEAT: repeated, EventKind.RESOLVED: resolved, EventKind.FIRING: set()}


def _write_rows(
    conn: Connection,
    plan: _Plan,
    keyed: list[dict[Key, IncomingAlert]],
    receipt_ids: list[int],
    inserted: dict[Key, int],
    ids: dict[Key, int],
    changes: list[_Change],
    *,
    now: datetime,
) -> None:
    """Labels of new alerts, receipt links (duplicates too) and events."""
    when = Codec(conn).time(now)
    # In (name, value) order, consecutive rows land on the same leaf of the label index instead of
    # one leaf per label name in turn: a third less time in that insert on SQLite. (Rows are built
    # in that column order so that the tuples sort as they are, without a key function.)
    labels = [(name, value, alert_id) for key, alert_id in inserted.items() for name, value in plan.new_labels[key]]
    labels.sort()
    links = [(receipt_ids[i], ids[key]) for i, keys in enumerate(keyed) for key in keys if key in ids]
    event_rows = [(ids[c.key], receipt_ids[c.receipt], _KIND_TEXT[c.kind], c.reason, when) for c in changes]
    insert_many(conn, alert_labels, ("name", "value", "alert_id"), labels)
    insert_many(conn, receipt_alerts, ("receipt_id", "alert_id"), links)
    insert_many(conn, events, ("alert_id", "receipt_id", "kind", "reason", "at"), event_rows)


_NOTIFICATION_COLUMNS = (
    "channel", "recipient", "kind", "group_key", "receipt_id", "status", "attempts", "next_attempt_at", "created_at",
)  # fmt: skip


def _queue_notifications(
    conn: Connection,
    batch: Sequence[IncomingReceipt],
    keyed: list[dict[Key, IncomingAlert]],
    receipt_ids: list[int],
    ids: dict[Key, int],
    notified: list[_Change],
    *,
    now: datetime,
) -> list[tuple[int, int]]:
    """One outbox row per (receipt, channel, recipient) covering all of that recipient's changed alerts."""
    covered: dict[tuple[int, str, str], list[_Change]] = defaultdict(list)
    for change in notified:
        for channel, recipient in keyed[change.receipt][change.key].recipients:
            covered[(change.receipt, channel, recipient)].append(change)
    if not covered:
        return []
    targets = sorted(covered)
    stamp = Codec(conn).time(now)
    rows = [
        (
            channel,
            recipient,
            _message_kind(c.kind for c in covered[(index, channel, recipient)]),
            _fit_index(batch[index].group_key),
            receipt_ids[index],
            "pending",
            0,
            stamp,
            stamp,
        )
        for index, channel, recipient in targets
    ]
    notification_ids = insert_returning_ids(conn, notifications, _NOTIFICATION_COLUMNS, rows)
    links = [
        (nid, ids[c.key], _KIND_TEXT[c.kind])
        for nid, target in zip(notification_ids, targets, strict=True)
        for c in covered[target]
    ]
    insert_many(conn, notification_alerts, ("notification_id", "alert_id", "kind"), links)
    return [(target[0], nid) for target, nid in zip(targets, notification_ids, strict=True)]


def _message_kind(kinds: Iterable[EventKind]) -> str:
    """A message is 'resolved' only when everything it reports resolved; otherwise it is about firing."""
    found = set(kinds)
    if found == {EventKind.RESOLVED}:
        return "resolved"
    if found == {EventKind.REPEAT}:
        return "repeat"
    return "firing"
