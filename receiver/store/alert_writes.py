"""Statements on the alerts table for the write path: states, new occurrences, guarded transitions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from pydantic_core import to_json
from sqlalchemy import and_, bindparam, update
from sqlalchemy.engine import Connection

from receiver.dedup import AlertState
from receiver.store.bulk import Codec, insert_returning, run_sql
from receiver.store.tables import alerts

Key = tuple[str, datetime]  # (fingerprint, startsAt): one occurrence
CHUNK = 500  # rows per IN (...) list: well inside SQLite's and asyncpg's parameter limits


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# One index seek per wanted key on (starts_at, fingerprint): the keys travel as one JSON array of
# [starts_at, fingerprint] pairs and drive a nested loop. SQLite: CROSS JOIN keeps json_each the outer
# loop. PostgreSQL: the LIMIT keeps the per-key subquery from being merged into a join, which the
# prepared statement's generic plan (made while the table was small) turned into a hash join over a
# scan of every alert, at every batch.
_LOAD_STATES = {
    "sqlite": "SELECT a.id, a.fingerprint, a.starts_at, a.status, a.last_event_at"
    " FROM json_each(?) AS k CROSS JOIN alerts AS a"
    " WHERE a.starts_at = json_extract(k.value, '$[0]') AND a.fingerprint = json_extract(k.value, '$[1]')",
    "postgresql": "SELECT a.id, a.fingerprint, a.starts_at, a.status, a.last_event_at"
    " FROM jsonb_array_elements($1::jsonb) AS k CROSS JOIN LATERAL (SELECT * FROM alerts"
    " WHERE starts_at = (k->>0)::timestamp AND fingerprint = k->>1 LIMIT 1) AS a",
}


def load_states(conn: Connection, keys: Iterable[Key]) -> dict[Key, tuple[int, AlertState]]:
    """Id and state of the occurrences among `keys` that are already stored."""
    codec = Codec(conn)
    wanted = {(fingerprint, codec.time(start)): (fingerprint, start) for fingerprint, start in keys}
    found: dict[Key, tuple[int, AlertState]] = {}
    if not wanted:
        return found
    pairs = to_json(sorted((start, fingerprint) for fingerprint, start in wanted)).decode()
    rows = run_sql(conn, _LOAD_STATES[conn.dialect.name], (pairs,))
    for alert_id, fingerprint, starts_at, status, last_event_at in rows:
        key = wanted.get((fingerprint, starts_at))
        if key is not None:
            found[key] = (alert_id, AlertState(status, codec.read_time(last_event_at)))
    return found


_ALERT_COLUMNS = tuple(c.name for c in alerts.c if c.name != "id")
_ALERT_TIMES = frozenset({"starts_at", "ends_at", "first_seen_at", "last_seen_at", "last_event_at", "resolved_at"})
_ALERT_VALUES = itemgetter(*_ALERT_COLUMNS)  # a row's values in column order, taken in C
_TIME_POSITIONS = tuple(i for i, name in enumerate(_ALERT_COLUMNS) if name in _ALERT_TIMES)


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> dict[Key, int]:
    """Insert occurrences; returns ids of those inserted (a key another writer stored first is absent).

    `rows` hold the alerts columns with the JSON ones already as text (IncomingAlert.json_text).
    """
    to_db = Codec(conn).time
    values = []
    for row in rows:
        value = list(_ALERT_VALUES(row))
        for i in _TIME_POSITIONS:
            value[i] = to_db(value[i])
        values.append(tuple(value))
    # The database hands starts_at back in its own form; map it back to the key we were given.
    keys = {(row["fingerprint"], to_db(row["starts_at"])): (row["fingerprint"], row["starts_at"]) for row in rows}
    returned = insert_returning(
        conn,
        alerts,
        _ALERT_COLUMNS,
        values,
        conflict=("starts_at", "fingerprint"),
        returning=("id", "fingerprint", "starts_at"),
    )
    return {keys[(fingerprint, starts)]: alert_id for alert_id, fingerprint, starts in returned}


def resolve(conn: Connection, details: dict[int, dict[str, Any]], *, now: datetime) -> set[int]:
    """Mark firing alerts resolved; only rows still firing count (another replica may have won).

    `details` maps alert id to its ends_at, annotations, links and Alertmanager URL from the resolving
    payload.
    """
    won: set[int] = set()
    for chunk in chunks(sorted(details)):
        stmt = (
            update(alerts)
            .where(and_(alerts.c.id.in_(chunk), alerts.c.status == "firing"))
            .values(status="resolved", resolved_at=now, last_event_at=now, last_seen_at=now)
            .returning(alerts.c.id)
        )
        won |= set(conn.execute(stmt).scalars())
    if won:
        stmt = (
            update(alerts)
            .where(alerts.c.id == bindparam("b_id"))
            .values(
                ends_at=bindparam("b_ends"),
                annotations=bindparam("b_ann"),
                links=bindparam("b_links"),
                alertmanager_url=bindparam("b_am"),
            )
        )
        conn.execute(stmt, [{"b_id": i, **details[i]} for i in sorted(won)])
    return won


def repeat(conn: Connection, alert_ids: Iterable[int], *, now: datetime, window: timedelta) -> set[int]:
    """Record a reminder for still-firing alerts whose last event is older than the window."""
    won: set[int] = set()
    for chunk in chunks(sorted(alert_ids)):
        stmt = (
            update(alerts)
            .where(and_(alerts.c.id.in_(chunk), alerts.c.status == "firing", alerts.c.last_event_at <= now - window))
            .values(last_event_at=now, last_seen_at=now)
            .returning(alerts.c.id)
        )
        won |= set(conn.execute(stmt).scalars())
    return won


def touch(conn: Connection, alert_ids: Iterable[int], *, now: datetime) -> set[int]:
    """Note that a receipt mentioned these alerts (retention keeps what is still being sent); the ids
    of those still stored.

    Nothing else checks that they are: the rows that refer to alerts have no foreign keys (see
    tables.py). On PostgreSQL the update also locks the rows until the commit; retention's delete,
    waiting on that lock, then checks its condition again and finds them seen just now.
    """
    found: set[int] = set()
    for chunk in chunks(sorted(alert_ids)):
        stmt = update(alerts).where(alerts.c.id.in_(chunk)).values(last_seen_at=now).returning(alerts.c.id)
        found |= set(conn.execute(stmt).scalars())
    return found
