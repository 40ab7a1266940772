"""Alembic migrations: empty -> head -> base -> head on both databases, and head equals the tables."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from receiver.store import migrate
from receiver.store.engine import create_engine
from receiver.store.tables import metadata


async def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        assert set(metadata.tables) | {"alembic_version"} == await _tables(engine)
        await migrate.downgrade(engine, "base")
        assert await _tables(engine) <= {"alembic_version"}
        await migrate.upgrade(engine)
        assert set(metadata.tables) <= await _tables(engine)
    finally:
        await engine.dispose()


async def test_head_matches_the_table_definitions(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": False}), metadata)
            )
        assert diff == []
    finally:
        await engine.dispose()


_ALERT_0003 = """
INSERT INTO alerts (id, fingerprint, starts_at, status, alertname, severity, model, receiver, group_key, labels,
    annotations, generator_url, first_seen_at, last_seen_at, last_event_at, links)
VALUES (7, 'f1', '2026-11-30 01:00:00', 'firing', 'ModelDown', 'critical', 'fraud', 'r', 'g',
    '{"alertname": "ModelDown"}', '{}', '', '2026-11-30 01:00:00', '2026-11-30 01:00:00', '2026-11-30 01:00:00', '{}')
"""
_LABELS = {("alertname", "ModelDown"), ("severity", "critical"), ("model", "fraud")}


async def _labels_and_indexes(engine) -> tuple[set[tuple[str, str]], set[str]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        labels = {tuple(r) for r in await conn.execute(text("SELECT name, value FROM alert_labels WHERE alert_id = 7"))}
        indexes = await conn.run_sync(lambda c: {ix["name"] for ix in inspect(c).get_indexes("alerts")})
    return labels, indexes


async def _store_alert_with_labels(engine) -> None:  # type: ignore[no-untyped-def]
    """Alert 7 and its _LABELS, written as SQL that every revision from 0003 on accepts."""
    async with engine.begin() as conn:
        await conn.execute(text(_ALERT_0003))
        for name, value in _LABELS:
            await conn.execute(
                text("INSERT INTO alert_labels (alert_id, name, value) VALUES (7, :n, :v)"), {"n": name, "v": value}
            )


async def test_0004_keeps_labels_and_moves_label_copies_to_the_label_index(db_url: str) -> None:
    """0004 drops the alertname/severity/model indexes and (SQLite) rebuilds alert_labels without rowid;
    stored labels survive the way up and the way down."""
    engine = create_engine(db_url)
    copies = {"ix_alerts_alertname_id", "ix_alerts_severity_id", "ix_alerts_model_id"}
    try:
        await migrate.upgrade(engine, "0003")
        await _store_alert_with_labels(engine)
        await migrate.upgrade(engine)
        labels, indexes = await _labels_and_indexes(engine)
        assert labels == _LABELS and not copies & indexes
        if engine.dialect.name == "sqlite":
            async with engine.connect() as conn:
                sql = (await conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'alert_labels'"))).scalar()
            assert "WITHOUT ROWID" in sql
        await migrate.downgrade(engine, "0003")
        labels, indexes = await _labels_and_indexes(engine)
        assert labels == _LABELS and copies <= indexes
    finally:
        await engine.dispose()


async def test_0004_on_sqlite_drops_label_rows_whose_alert_is_gone(sqlite_url: str) -> None:
    """Rows left by a delete made with foreign keys off (the sqlite3 shell's default) do not fail the
    table rebuild: they are the only rows not copied."""
    engine = create_engine(sqlite_url)
    try:
        await migrate.upgrade(engine, "0003")
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # before any transaction: it applies
            await conn.execute(text(_ALERT_0003))
            await conn.execute(text("INSERT INTO alert_labels (alert_id, name, value) VALUES (7, 'team', 'ml')"))
            await conn.execute(text("INSERT INTO alert_labels (alert_id, name, value) VALUES (99, 'orphan', 'x')"))
            await conn.commit()
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT alert_id, name, value FROM alert_labels"))).all()
        assert [tuple(r) for r in rows] == [(7, "team", "ml")]
    finally:
        await engine.dispose()


async def _label_keys(engine) -> tuple[list[str], list[dict[str, object]]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: (
                inspect(c).get_pk_constraint("alert_labels")["constrained_columns"],
                inspect(c).get_foreign_keys("alert_labels"),
            )
        )


async def test_0006_keys_label_rows_by_label_and_back(db_url: str) -> None:
    """0006 makes (name, value, alert_id) the primary key, without the foreign key or another index;
    stored labels survive the way up and the way down, which restores the old key and foreign key."""
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "0005")
        await _store_alert_with_labels(engine)
        await migrate.upgrade(engine)
        labels, _ = await _labels_and_indexes(engine)
        assert labels == _LABELS
        assert await _label_keys(engine) == (["name", "value", "alert_id"], [])
        async with engine.connect() as conn:
            label_indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("alert_labels"))
        assert label_indexes == []
        await migrate.downgrade(engine, "0005")
        labels, _ = await _labels_and_indexes(engine)
        pk, fks = await _label_keys(engine)
        assert labels == _LABELS and pk == ["alert_id", "name"] and [fk["referred_table"] for fk in fks] == ["alerts"]
    finally:
        await engine.dispose()


_REFERRING = {
    "events": "INSERT INTO events (id, alert_id, receipt_id, kind, reason, at)"
    " VALUES (1, 7, 1, 'firing', 'new', '{t}')",
    "receipt_alerts": "INSERT INTO receipt_alerts (receipt_id, alert_id) VALUES (1, 7)",
    "notifications": "INSERT INTO notifications (id, channel, recipient, kind, group_key, receipt_id, status,"
    " attempts, created_at) VALUES (1, 'email', 'a@example.com', 'firing', 'g', 1, 'pending', 0, '{t}')",
    "notification_alerts": "INSERT INTO notification_alerts (notification_id, alert_id, kind) VALUES (1, 7, 'firing')",
}
_RECEIPT = (
    "INSERT INTO receipts (id, received_at, receiver, group_key, status, digest, duplicate, alert_count,"
    " truncated_alerts, external_url, group_labels) VALUES (1, '{t}', 'r', 'g', 'firing', 'd', false, 1, 0, '', '{{}}')"
)
_TIME = "2026-11-30 01:00:00"


async def _foreign_keys(engine) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {t: sorted(fk["referred_table"] for fk in inspect(c).get_foreign_keys(t)) for t in _REFERRING}
        )


async def _count(engine, sql: str) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_0007_drops_the_foreign_keys_of_referring_tables_and_back(db_url: str) -> None:
    """0007 keeps every referring row and drops the foreign keys; the way down deletes rows whose parent
    is gone (nulls an event's pruned receipt) and restores the foreign keys."""
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "0006")
        await _store_alert_with_labels(engine)
        async with engine.begin() as conn:
            for sql in (_RECEIPT, *_REFERRING.values()):
                await conn.execute(text(sql.format(t=_TIME)))
        await migrate.upgrade(engine)
        assert await _foreign_keys(engine) == {t: [] for t in _REFERRING}
        for table in _REFERRING:
            assert await _count(engine, f"SELECT count(*) FROM {table}") == 1, table
        async with engine.begin() as conn:  # what a delete outside the receiver could leave behind
            await conn.execute(text("INSERT INTO receipt_alerts (receipt_id, alert_id) VALUES (1, 99)"))
            await conn.execute(text("UPDATE events SET receipt_id = 42 WHERE id = 1"))
        await migrate.downgrade(engine, "0006")
        assert await _foreign_keys(engine) == {
            "events": ["alerts", "receipts"],
            "receipt_alerts": ["alerts", "receipts"],
            "notifications": ["receipts"],
            "notification_alerts": ["alerts", "notifications"],
        }
        assert await _count(engine, "SELECT count(*) FROM receipt_alerts") == 1
        assert await _count(engine, "SELECT count(*) FROM events WHERE receipt_id IS NULL") == 1
        assert await _count(engine, "SELECT count(*) FROM notification_alerts") == 1
    finally:
        await engine.dispose()


async def _alert_keys(engine) -> tuple[set[str], set[tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    """alerts' index names, and the columns of its unique indexes and constraints (PostgreSQL lists a
    unique constraint's index among the indexes too)."""

    def read(c):  # type: ignore[no-untyped-def]
        found = inspect(c)
        indexes = found.get_indexes("alerts")
        unique = [ix["column_names"] for ix in indexes if ix["unique"]]
        unique += [u["column_names"] for u in found.get_unique_constraints("alerts")]
        return {ix["name"] for ix in indexes}, {tuple(columns) for columns in unique}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_0008_keys_occurrences_by_start_then_fingerprint_and_back(db_url: str) -> None:
    """0008: one unique index on (starts_at, fingerprint) replaces the unique (fingerprint, starts_at) and
    the (starts_at, id) index; stored alerts survive both ways and a second copy of one is refused."""
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine, "0007")
        await _store_alert_with_labels(engine)
        await migrate.upgrade(engine)
        names, unique = await _alert_keys(engine)
        assert "ix_alerts_starts_at_id" not in names and unique == {("starts_at", "fingerprint")}
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text(_ALERT_0003.replace("(7,", "(8,")))
        await migrate.downgrade(engine, "0007")
        names, unique = await _alert_keys(engine)
        assert "ix_alerts_starts_at_id" in names and unique == {("fingerprint", "starts_at")}
        assert await _count(engine, "SELECT count(*) FROM alerts WHERE id = 7 AND fingerprint = 'f1'") == 1
    finally:
        await engine.dispose()
