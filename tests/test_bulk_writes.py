"""The write path's bulk inserts (receiver/store/bulk.py) store exactly what SQLAlchemy Core would.

Everything else reads these rows through Core (filters, history, dispatch), so a value written in
another form (a datetime without its microseconds on SQLite, JSON double-encoded on PostgreSQL) would
break reads silently. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from receiver.store import migrate
from receiver.store.bulk import Codec, UpdateIf, insert_many, insert_returning, insert_returning_ids
from receiver.store.engine import create_engine
from receiver.store.tables import alert_labels, alerts, receipt_claims, receipts

COLUMNS = tuple(c.name for c in alerts.c if c.name != "id")
TIMES = {"starts_at", "ends_at", "first_seen_at", "last_seen_at", "last_event_at", "resolved_at"}
JSONS = {"labels", "annotations", "model_info", "links"}

HOSTILE = 'quote " backslash \\ newline \n tab \t unicode ü 漢字 emoji 🚨 dollar $1 brace {x} ->>'


def alert_values(fingerprint: str, **overrides: Any) -> dict[str, Any]:
    whole_second = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)  # no microseconds: the tricky case on SQLite
    values: dict[str, Any] = {
        "fingerprint": fingerprint,
        "starts_at": whole_second,
        "ends_at": None,
        "status": "firing",
        "alertname": "ModelDrift",
        "severity": None,
        "model": "fraud-detector",
        "team": HOSTILE,
        "receiver": "ml",
        "group_key": '{}:{alertname="ModelDrift"}',
        "labels": {"alertname": "ModelDrift", "value": HOSTILE, "empty": ""},
        "annotations": {},
        "generator_url": "",
        # another timezone than UTC: stored as the same instant in naive UTC
        "first_seen_at": datetime(2026, 11, 29, 13, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1, minutes=30))),
        "last_seen_at": datetime(2026, 11, 29, 12, 0, 0, 1, tzinfo=UTC),
        "last_event_at": datetime(2026, 11, 29, 12, 0, 0, 999999, tzinfo=UTC),
        "resolved_at": None,
        "model_info": {"owner": "alice@example.com", "extra": {"nested": [1, 2.5, None, True]}},
        "links": {"runbook": "http://wiki/runbooks/drift?a=%22b%22"},
        "alertmanager_url": "http://am:9093",
    }
    values.update(overrides)
    return values


def as_bulk_row(codec: Codec, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        codec.time(values[c]) if c in TIMES else codec.json(values[c]) if c in JSONS else values[c] for c in COLUMNS
    )


@pytest.fixture
async def engine(db_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(db_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


async def _read(engine, fingerprint: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        row = (await conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint))).mappings().one()
    return {k: v for k, v in row.items() if k not in ("id", "fingerprint")}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"ends_at": datetime(2026, 11, 29, 12, 5, tzinfo=UTC), "status": "resolved", "model_info": None},
        {"labels": {"only": "one"}, "annotations": {"summary": HOSTILE}, "links": {}},
    ],
)
async def test_bulk_insert_reads_back_as_core_insert(engine, overrides: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(alerts.insert().values(alert_values("c000000000000001", **overrides)))

        def bulk(sync_conn):  # type: ignore[no-untyped-def]
            codec = Codec(sync_conn)
            row = as_bulk_row(codec, alert_values("b000000000000001", **overrides))
            return insert_returning(
                sync_conn, alerts, COLUMNS, [row], conflict=("fingerprint", "starts_at"), returning=("id",)
            )

        assert len(await conn.run_sync(bulk)) == 1
    core, raw = await _read(engine, "c000000000000001"), await _read(engine, "b000000000000001")
    assert raw == core
    assert raw["first_seen_at"] == datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)


async def test_core_filters_find_bulk_written_times(engine) -> None:  # type: ignore[no-untyped-def]
    """SQLite compares times as text: the bulk form must be the one Core binds in WHERE clauses."""
    start = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def bulk(sync_conn):  # type: ignore[no-untyped-def]
        rows = [
            as_bulk_row(
                Codec(sync_conn), alert_values(f"f{n:015d}", starts_at=start + timedelta(microseconds=n * 250_000))
            )
            for n in range(8)
        ]
        insert_returning(sync_conn, alerts, COLUMNS, rows, conflict=("fingerprint", "starts_at"), returning=("id",))

    async with engine.begin() as conn:
        await conn.run_sync(bulk)
    async with engine.connect() as conn:
        exact = select(alerts.c.fingerprint).where(alerts.c.starts_at == start)
        window = select(func.count()).where(
            alerts.c.starts_at >= start + timedelta(seconds=1), alerts.c.starts_at < start + timedelta(seconds=2)
        )
        assert (await conn.execute(exact)).scalars().all() == ["f000000000000000"]
        assert (await conn.execute(window)).scalar_one() == 4  # 1.0, 1.25, 1.5, 1.75 s


async def test_insert_returning_returns_only_rows_it_inserted(engine) -> None:  # type: ignore[no-untyped-def]
    def bulk(sync_conn, fingerprints):  # type: ignore[no-untyped-def]
        rows = [as_bulk_row(Codec(sync_conn), alert_values(fp)) for fp in fingerprints]
        found = insert_returning(
            sync_conn, alerts, COLUMNS, rows, conflict=("fingerprint", "starts_at"), returning=("fingerprint",)
        )
        return sorted(fp for (fp,) in found)

    async with engine.begin() as conn:
        assert await conn.run_sync(bulk, ["a000000000000001", "a000000000000002"]) == [
            "a000000000000001",
            "a000000000000002",
        ]
    async with engine.begin() as conn:
        assert await conn.run_sync(bulk, ["a000000000000002", "a000000000000003"]) == ["a000000000000003"]


async def test_insert_many_past_sqlites_parameter_limit(engine) -> None:  # type: ignore[no-untyped-def]
    """25,000 rows: more parameters than one SQLite statement binds, written in chunks of at most 64 rows."""

    def bulk(sync_conn):  # type: ignore[no-untyped-def]
        ids = insert_returning(
            sync_conn,
            alerts,
            COLUMNS,
            [as_bulk_row(Codec(sync_conn), alert_values("d000000000000001"))],
            conflict=("fingerprint", "starts_at"),
            returning=("id",),
        )
        alert_id = ids[0][0]
        insert_many(
            sync_conn,
            alert_labels,
            ("alert_id", "name", "value"),
            [(alert_id, f"l{n}", HOSTILE) for n in range(25_000)],
        )

    async with engine.begin() as conn:
        await conn.run_sync(bulk)
    async with engine.connect() as conn:
        values = (await conn.execute(select(alert_labels.c.value).distinct())).scalars().all()
        count = (await conn.execute(select(func.count()).select_from(alert_labels))).scalar_one()
    assert (count, values) == (25_000, [HOSTILE])


@pytest.mark.parametrize("count", [1, 63, 64, 65, 200])
async def test_insert_returning_any_number_of_rows(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    def bulk(sync_conn):  # type: ignore[no-untyped-def]
        rows = [as_bulk_row(Codec(sync_conn), alert_values(f"e{n:015d}")) for n in range(count)]
        return insert_returning(
            sync_conn, alerts, COLUMNS, rows, conflict=("fingerprint", "starts_at"), returning=("fingerprint",)
        )

    async with engine.begin() as conn:
        found = await conn.run_sync(bulk)
    assert sorted(fp for (fp,) in found) == [f"e{n:015d}" for n in range(count)]


@pytest.mark.parametrize("count", [1, 64, 150])
async def test_insert_returning_ids_come_back_in_row_order(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    """The write path maps each receipt to its id by position: ids[i] must be the row rows[i] became."""
    now = datetime(2026, 11, 30, 2, tzinfo=UTC)
    digests = [f"{(n * 7919) % 1000:064d}" for n in range(count)]  # not in sorted order

    def bulk(sync_conn):  # type: ignore[no-untyped-def]
        codec = Codec(sync_conn)
        rows = [(codec.time(now), "r", "g", "firing", d, False, 1, 0, None, "", "{}") for d in digests]
        columns = ("received_at", "receiver", "group_key", "status", "digest", "duplicate", "alert_count",
                   "truncated_alerts", "notification_reason", "external_url", "group_labels")  # fmt: skip
        return insert_returning_ids(sync_conn, receipts, columns, rows)

    async with engine.begin() as conn:
        await conn.run_sync(bulk)  # ids no longer start at 1
        ids = await conn.run_sync(bulk)
        stored = dict((await conn.execute(select(receipts.c.id, receipts.c.digest))).all())
    assert [stored[i] for i in ids] == digests


async def test_update_if_refreshes_only_rows_past_the_condition(engine) -> None:  # type: ignore[no-untyped-def]
    """Receipt claims: a digest is claimed again only when its last claim is at or before the cutoff."""
    t0 = datetime(2026, 11, 30, 2, tzinfo=UTC)

    def claim(sync_conn, digests, now, cutoff):  # type: ignore[no-untyped-def]
        codec = Codec(sync_conn)
        rows = [(d, codec.time(now)) for d in digests]
        update = UpdateIf(("claimed_at",), "receipt_claims.claimed_at <= {}", codec.time(cutoff))
        found = insert_returning(
            sync_conn, receipt_claims, ("digest", "claimed_at"), rows, conflict=("digest",), returning=("digest",),
            update=update,
        )  # fmt: skip
        return sorted(d for (d,) in found)

    async with engine.begin() as conn:
        assert await conn.run_sync(claim, ["old", "recent"], t0, t0 - timedelta(days=1)) == ["old", "recent"]
    async with engine.begin() as conn:
        await conn.execute(
            receipt_claims.update().where(receipt_claims.c.digest == "old").values(claimed_at=t0 - timedelta(hours=2))
        )
        t1 = t0 + timedelta(minutes=30)
        got = await conn.run_sync(claim, ["old", "recent", "new"], t1, t1 - timedelta(hours=1))
    assert got == ["new", "old"]
    async with engine.connect() as conn:
        stamps = dict((await conn.execute(select(receipt_claims.c.digest, receipt_claims.c.claimed_at))).all())
    assert stamps == {"old": t0 + timedelta(minutes=30), "recent": t0, "new": t0 + timedelta(minutes=30)}
