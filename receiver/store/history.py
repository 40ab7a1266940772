"""The read path: alert history with filters, matchers and keyset pagination (newest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    LargeBinary,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    not_,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.enrich import links_of
from receiver.matchers import Matcher, literal_prefix, parse_matcher, values_matching
from receiver.store.ingest import INDEX_ENTRY_BYTES, INDEX_ENTRY_CHARS
from receiver.store.tables import (
    alert_labels,
    alerts,
    events,
    notification_alerts,
    notifications,
    receipt_alerts,
    receipts,
)


@dataclass(frozen=True)
class AlertFilter:
    """Filters of GET /api/v1/alerts; every one that is set must hold."""

    status: str | None = None
    alertname: str | None = None
    severity: str | None = None
    model: str | None = None
    team: str | None = None
    receiver: str | None = None
    since: datetime | None = None  # on starts_at
    until: datetime | None = None
    matchers: Sequence[Matcher] = field(default_factory=tuple)
    model_label: str = "model"  # the label ingest copied into the model column (settings.model_label)

    def label_equalities(self) -> list[Matcher]:
        """Equality matchers that hold for every match: the given ones, then the column filters that
        are copies of a label (alertname, severity, model). The label index serves these; the alerts
        table has no index of its own for those columns."""
        twins = [("alertname", self.alertname), ("severity", self.severity), (self.model_label, self.model)]
        found = [m for m in self.matchers if m.op == "=" and m.value]
        return found + [Matcher(name, "=", value) for name, value in twins if value]

    def without_nul(self) -> AlertFilter:
        """This filter with NUL in its column values replaced by U+FFFD, as the webhook stored them
        (matchers come from query_matcher, which replaced it already)."""
        texts = {name: without_nul(value) for name in _COLUMN_FILTERS if (value := getattr(self, name)) is not None}
        return replace(self, **texts)


def without_nul(value: str) -> str:
    """PostgreSQL rejects NUL in text, and the webhook stored it as U+FFFD: a filter looks for that."""
    return value.replace("\x00", "\ufffd")


def query_matcher(text: str) -> Matcher:
    """A matcher from a history query (API or page); ValueError when invalid.

    NUL is replaced before parsing, so a regex that no longer compiles then is a clear error."""
    return parse_matcher(without_nul(text))


_COLUMN_FILTERS = ("status", "alertname", "severity", "model", "team", "receiver")


def _label_has(name: str, values: Sequence[str]) -> ColumnElement[bool]:
    """EXISTS a label row (name, one of values) for the alert: a seek per value in the primary key."""
    return exists().where(
        alert_labels.c.name == name, alert_labels.c.value.in_(values), alert_labels.c.alert_id == alerts.c.id
    )


def _label_value(name: str, *, postgres: bool) -> ColumnElement[str]:
    """The alert's value of label `name` from its labels column; "" when it has none.

    A value too long for the label index counts as none here too (store/ingest._indexed_labels), so
    both ways of answering a matcher, by the index and by this, agree.
    """
    value = alerts.c.labels[name].as_string()
    size = func.octet_length(value) if postgres else func.length(cast(value, LargeBinary))
    # Labels whose whole JSON is short (nearly every alert's) cannot hold a value that long: one
    # JSON lookup per row instead of two.
    short = func.length(cast(alerts.c.labels, Text)) <= INDEX_ENTRY_CHARS
    return case((short, func.coalesce(value, "")), (size <= INDEX_ENTRY_BYTES - len(name.encode()), value), else_="")


_SEEKS_PER_ROW = 8  # up to this many values, a matcher's row test looks them up in the label index


def _value_in(name: str, values: Sequence[str], *, postgres: bool) -> ColumnElement[bool]:
    """The alert's value of `name` is one of `values`. On PostgreSQL they travel as one array
    parameter, so a regex that matched a thousand values is still one statement text that asyncpg
    has prepared before, not a new one. A few values are looked up in the label index instead: a
    seek each costs less than reading the value out of the alert's labels."""
    if 0 < len(values) <= _SEEKS_PER_ROW:
        return _label_has(name, values)
    value = _label_value(name, postgres=postgres)
    if postgres:
        return value == any_(bindparam("values", list(values), type_=ARRAY(Text), unique=True))
    return value.in_(values)


async def _matcher_condition(conn: AsyncConnection, m: Matcher) -> ColumnElement[bool]:
    """SQL for one matcher. A missing label counts as "" (Alertmanager's rule), and a label whose
    value is "" counts as missing: the history answers as routing (Matcher.matches) would."""
    empty_matches = m.matches_value("")
    pg = _is_postgres(conn)
    if m.op == "=" and m.value:
        return _label_has(m.name, [m.value])
    if m.op == "!=" and m.value:
        return not_(_label_has(m.name, [m.value]))
    if m.op in ("=", "!="):  # `x=""`: no non-empty x; `x!=""`: a non-empty x
        if not await distinct_label_values(conn, m.name, cap=1):  # no alert has it: no need to look
            return true() if m.op == "=" else false()
        value = _label_value(m.name, postgres=pg)
        return value == "" if m.op == "=" else value != ""
    # Regexes: evaluate them in Python over the label's distinct values, so SQLite and PostgreSQL
    # agree on regex semantics, then compare each alert's value with those.
    prefix = literal_prefix(m.value)
    if prefix and await _ranges_follow_code_points(conn):
        # Every value the regex matches starts with the prefix, and "" does not: only values in the
        # prefix's range need reading (`instance=~"pod-12.*"` reads 1 in 45 of a 50,000-value label).
        in_range = await distinct_label_values(conn, m.name, prefix=prefix, cap=_PREFIX_SKIP_SCAN_CAP)
        matching = _value_in(m.name, values_matching(m, in_range), postgres=pg)
        return matching if m.op == "=~" else not_(matching)
    values = await distinct_label_values(conn, m.name)
    hits = set(values_matching(m, values))
    wanted = m.op == "=~"  # whether m.matches_value accepts a value its regex matches
    if empty_matches:
        return not_(_value_in(m.name, [v for v in values if (v in hits) != wanted], postgres=pg))
    return _value_in(m.name, [v for v in values if (v in hits) == wanted], postgres=pg)


def _is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


_CODE_POINT_COLLATIONS = {"c", "posix", "c.utf-8", "c.utf8", "ucs_basic"}
_collation_checked: dict[str, bool] = {}


async def _ranges_follow_code_points(conn: AsyncConnection) -> bool:
    """Whether `value >= lo AND value < hi` on label values means "starts with" as Python sees it.

    SQLite compares bytes of UTF-8 (code point order). PostgreSQL follows the database's collation;
    only C-like ones order by code point (en_US, say, may sort `pod-1x` outside `['pod-1', 'pod-2')`).
    """
    if not _is_postgres(conn):
        return True
    key = str(conn.engine.url)
    if key not in _collation_checked:
        query = text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        collation = (await conn.execute(query)).scalar_one()
        _collation_checked[key] = str(collation).lower() in _CODE_POINT_COLLATIONS
    return _collation_checked[key]


# A loose index scan: one seek on (name, value, ...) per distinct value, instead of reading every label
# row of that name (a million for `alertname` in a large history, a handful of distinct values).
_SKIP_SCAN = """
    WITH RECURSIVE found(value) AS (
        SELECT min(value) FROM alert_labels WHERE name = :name AND value >= :lo {below}
        UNION ALL
        SELECT (SELECT min(value) FROM alert_labels WHERE name = :name AND value > found.value {below})
        FROM found WHERE found.value IS NOT NULL
    )
    SELECT value FROM found WHERE value IS NOT NULL LIMIT :cap
"""
_DISTINCT_VALUES = text(_SKIP_SCAN.format(below=""))
_DISTINCT_VALUES_BELOW = text(_SKIP_SCAN.format(below="AND value < :hi"))
_SKIP_SCAN_CAP = 1000  # past this many values one pass over the rows beats a seek per value
_PREFIX_SKIP_SCAN_CAP = 50  # the same inside a prefix's range: its rows are few when its values are many


async def distinct_label_values(
    conn: AsyncConnection, name: str, *, prefix: str = "", cap: int = _SKIP_SCAN_CAP
) -> list[str]:
    """Every value the label `name` has in the history (only those starting with `prefix`, if given)."""
    hi = _prefix_end(prefix)
    params = {"name": name, "lo": prefix, "hi": hi, "cap": cap}
    values = list((await conn.execute(_DISTINCT_VALUES if hi is None else _DISTINCT_VALUES_BELOW, params)).scalars())
    if len(values) < cap:
        return values
    in_range = [alert_labels.c.name == name, alert_labels.c.value >= prefix]
    if hi is not None:
        in_range.append(alert_labels.c.value < hi)
    query = select(alert_labels.c.value).where(*in_range).distinct()
    return list((await conn.execute(query)).scalars())


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix` (None: no such bound)."""
    if not prefix or prefix[-1] == "\U0010ffff":
        return None  # no code point follows U+10FFFF: the range stays open above
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000  # surrogates are no characters: no text holds one, and none can be encoded
    return prefix[:-1] + chr(following)


async def _conditions(conn: AsyncConnection, f: AlertFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    for name in _COLUMN_FILTERS:
        value = getattr(f, name)
        if value is not None:
            conds.append(alerts.c[name] == value)
    if f.since is not None:
        conds.append(alerts.c.starts_at >= f.since)
    if f.until is not None:
        conds.append(alerts.c.starts_at < f.until)
    for m in f.matchers:
        conds.append(await _matcher_condition(conn, m))
    return conds


async def list_alerts(
    conn: AsyncConnection, f: AlertFilter, *, limit: int, before_id: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of alerts, newest first; returns (rows, id to continue before, or None at the end)."""
    rows, last = await _alert_page(conn, f, limit=limit, before_id=before_id)
    return [with_links(row) for row in rows], last


async def _alert_page(
    conn: AsyncConnection, f: AlertFilter, *, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    f = f.without_nul()
    conds = await _conditions(conn, f)
    if before_id is not None:
        conds.append(alerts.c.id < before_id)
    driver = next(iter(f.label_equalities()), None)
    if driver is not None:
        page = await _page_from_label_index(conn, driver, conds, limit=limit, before_id=before_id)
        if page is not None:
            return page
    if f.since is not None and f.until is not None:
        page = await _page_from_time_window(conn, f, conds, limit=limit, before_id=before_id)
        if page is not None:
            return page
    return await newest_first(conn, alerts, conds, limit=limit)


_NEWER_ROWS_SCANNED = 5_000  # rows newer than a window that scanning newest first may step over


async def _page_from_time_window(
    conn: AsyncConnection, f: AlertFilter, conds: list[ColumnElement[bool]], *, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], int | None] | None:
    """A page for a since…until window in the past, driven by the (starts_at, fingerprint) index.

    Newest first by id, a window two weeks back is reached only after every newer alert has been
    stepped over (both databases' planners assume matches are spread evenly). Instead the database
    reads the window's ids from the index, sorts them and hands over the newest; the page is taken
    from those. None when the window is recent (scanning newest first is cheap) or open-ended.
    """
    if f.since is None or f.until is None:
        return None
    newer = select(alerts.c.id).where(alerts.c.starts_at >= f.until).limit(_NEWER_ROWS_SCANNED).subquery()
    if (await conn.execute(select(func.count()).select_from(newer))).scalar_one() < _NEWER_ROWS_SCANNED:
        return None
    rows: list[dict[str, Any]] = []
    take, below = limit + 1, before_id
    while True:
        ids = await _newest_in_window(conn, f.since, f.until, below, take)
        if ids:
            query = (
                select(alerts)
                .where(alerts.c.id.in_(ids), *conds)
                .order_by(alerts.c.id.desc())
                .limit(limit + 1 - len(rows))
            )
            rows.extend(dict(r._mapping) for r in (await conn.execute(query)).all())
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1]["id"]
        if len(ids) < take:  # the window is exhausted
            return rows, None
        take, below = take * 8, ids[-1]  # other filters thinned these out: read further, more at a time


async def _newest_in_window(
    conn: AsyncConnection, since: datetime, until: datetime, below: int | None, take: int
) -> list[int]:
    """The newest `take` ids of alerts starting in [since, until), below `below`."""
    window = [alerts.c.starts_at >= since, alerts.c.starts_at < until]
    if below is not None:
        window.append(alerts.c.id < below)
    # `id + 0`: an order the primary key cannot provide, so neither planner walks it backwards; both
    # read the window from the (starts_at, fingerprint) index, whose entries carry the id, and keep the
    # newest `take` in a top-N sort.
    query = select(alerts.c.id).where(*window).order_by((alerts.c.id + 0).desc()).limit(take)
    return list((await conn.execute(query)).scalars())


_PROBE = 2000  # label-index entries read ahead for an equality matcher


async def _page_from_label_index(
    conn: AsyncConnection, m: Matcher, conds: list[ColumnElement[bool]], *, limit: int, before_id: int | None
) -> tuple[list[dict[str, Any]], int | None] | None:
    """A page driven by the (name, value, alert_id) index: the newest ids carrying the label first.

    Scanning alerts newest first and probing labels per row costs a full scan when the value is rare;
    reading the label index in id order costs only the page. When the probe window was full but the
    other filters left the page short, the answer may be incomplete: None, and the caller scans.
    """
    window = select(alert_labels.c.alert_id).where(alert_labels.c.name == m.name, alert_labels.c.value == m.value)
    if before_id is not None:
        window = window.where(alert_labels.c.alert_id < before_id)
    window = window.order_by(alert_labels.c.alert_id.desc()).limit(_PROBE)
    candidates = list((await conn.execute(window)).scalars())
    rows, last = await newest_first(conn, alerts, [*conds, alerts.c.id.in_(candidates)], limit=limit)
    if last is None and len(candidates) == _PROBE:
        return None  # matches may lie beyond the window: let the caller scan
    return rows, last


def with_links(row: dict[str, Any]) -> dict[str, Any]:
    """An alerts row with every link, those rebuilt from its columns included (see enrich.read_links)."""
    row["links"] = links_of(row)
    return row


async def newest_first(
    conn: AsyncConnection, table: Table, conds: list[ColumnElement[bool]], *, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A keyset page: rows newest first, and the id to continue before (None on the last page)."""
    query = select(table).where(and_(True, *conds)).order_by(table.c.id.desc()).limit(limit + 1)
    rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


async def get_alert(conn: AsyncConnection, alert_id: int) -> dict[str, Any] | None:
    """One alert with its events, the receipts that carried it and its notifications."""
    row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
    if row is None:
        return None
    alert = with_links(dict(row._mapping))
    # An event keeps the id of a receipt that retention pruned: show null then, as for no receipt.
    receipt = receipts.c.id.label("receipt_id")
    ev = (
        select(events.c.kind, events.c.reason, events.c.at, receipt)
        .select_from(events.outerjoin(receipts, receipts.c.id == events.c.receipt_id))
        .where(events.c.alert_id == alert_id)
    )
    alert["events"] = [dict(r._mapping) for r in (await conn.execute(ev.order_by(events.c.id))).all()]
    rc = (
        select(receipts)
        .join(receipt_alerts, receipt_alerts.c.receipt_id == receipts.c.id)
        .where(receipt_alerts.c.alert_id == alert_id)
        .order_by(receipts.c.id)
    )
    alert["receipts"] = [dict(r._mapping) for r in (await conn.execute(rc)).all()]
    nt = (
        select(notifications)
        .join(notification_alerts, notification_alerts.c.notification_id == notifications.c.id)
        .where(notification_alerts.c.alert_id == alert_id)
        .order_by(notifications.c.id)
    )
    alert["notifications"] = [dict(r._mapping) for r in (await conn.execute(nt)).all()]
    return alert


async def list_receipts(
    conn: AsyncConnection,
    *,
    limit: int,
    before_id: int | None = None,
    duplicate: bool | None = None,
    group_key: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Recent webhook deliveries, newest first."""
    conds: list[ColumnElement[bool]] = []
    if before_id is not None:
        conds.append(receipts.c.id < before_id)
    if duplicate is not None:
        conds.append(receipts.c.duplicate == duplicate)
    if group_key is not None:
        conds.append(receipts.c.group_key == without_nul(group_key))
    return await newest_first(conn, receipts, conds, limit=limit)


async def model_counts(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Per model label: number of stored alerts by status."""
    query = (
        select(alerts.c.model, alerts.c.status, func.count())
        .where(alerts.c.model.is_not(None))
        .group_by(alerts.c.model, alerts.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for model, status, count in (await conn.execute(query)).all():
        counts.setdefault(model, {"firing": 0, "resolved": 0})[status] = count
    return counts


async def ping(conn: AsyncConnection) -> None:
    """A query that touches the schema, for /readyz."""
    await conn.execute(select(func.count()).select_from(select(receipts.c.id).limit(1).subquery()))
