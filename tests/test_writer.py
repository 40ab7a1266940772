"""Group commit (receiver/writer.py): which receipts share a transaction.

Receipts committed together share the transaction's `received_at`, which is how these tests tell
batches apart without timing anything.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from receiver.catalog import ModelCatalog
from receiver.config import Settings
from receiver.ingest import Preparer, ingest_policy
from receiver.schemas import WebhookPayload
from receiver.store import migrate
from receiver.store.engine import create_engine, create_sqlite_writer_engine
from receiver.store.ingest import IncomingReceipt, store_batch
from receiver.store.retention import prune
from receiver.store.tables import alerts, events, notification_alerts, receipt_alerts, receipt_claims, receipts
from receiver.writer import BatchWriter, _describe, local_writer
from tests.support import make_alert, make_payload

HANG_GUARD = 30  # seconds; only so a broken writer fails the test instead of hanging it


def receipt(model: str, alerts: int = 1) -> IncomingReceipt:
    payload = WebhookPayload.model_validate(make_payload([make_alert(model=model, n=str(n)) for n in range(alerts)]))
    return Preparer.from_settings(Settings(), ModelCatalog([])).prepare(payload)


@pytest.fixture
async def writer_for(sqlite_url: str) -> AsyncIterator:  # type: ignore[type-arg]
    engine = create_engine(sqlite_url)
    await migrate.upgrade(engine)
    started: list[BatchWriter] = []

    async def build(gather_window: float, max_batch_alerts: int | None = None) -> BatchWriter:
        writer = BatchWriter(
            engine,
            ingest_policy(Settings()),
            sqlite_engine=create_sqlite_writer_engine(sqlite_url),
            gather_window=gather_window,
            max_batch_alerts=max_batch_alerts,
        )
        await writer.start()
        started.append(writer)
        return writer

    yield build, engine
    for writer in started:
        await writer.stop()
        await writer.aclose()
    await engine.dispose()


async def _received_at(engine, receipt_ids: list[int]) -> list:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        query = select(receipts.c.received_at).where(receipts.c.id.in_(receipt_ids)).order_by(receipts.c.id)
        return list((await conn.execute(query)).scalars())


async def test_writer_waits_for_a_request_still_being_read(writer_for) -> None:  # type: ignore[no-untyped-def]
    build, engine = writer_for
    writer = await build(gather_window=HANG_GUARD)
    with writer.incoming():  # a second request is being read and parsed
        first = writer.enqueue(receipt("a"))
        await asyncio.sleep(0.2)  # plenty of time to commit `first` alone, if the writer did not wait
        assert not first.done()
        second = writer.enqueue(receipt("b"))
    outcomes = await asyncio.wait_for(asyncio.gather(first, second), HANG_GUARD)
    stamps = await _received_at(engine, [o.receipt_id for o in outcomes])
    assert len(stamps) == 2 and stamps[0] == stamps[1]  # one transaction


async def test_a_lone_request_is_committed_without_waiting_for_the_window(writer_for) -> None:  # type: ignore[no-untyped-def]
    build, engine = writer_for
    writer = await build(gather_window=3600)  # were it waited out, the guard below would fail the test
    outcome = await asyncio.wait_for(writer.enqueue(receipt("a")), HANG_GUARD)
    assert len(await _received_at(engine, [outcome.receipt_id])) == 1


async def test_without_a_window_each_batch_takes_only_what_is_queued(writer_for) -> None:  # type: ignore[no-untyped-def]
    build, engine = writer_for
    writer = await build(gather_window=0.0)
    with writer.incoming():
        first = writer.enqueue(receipt("a"))
        await asyncio.wait_for(asyncio.shield(first), HANG_GUARD)  # committed while the other is still coming
        second = writer.enqueue(receipt("b"))
    outcomes = [await first, await asyncio.wait_for(second, HANG_GUARD)]
    stamps = await _received_at(engine, [o.receipt_id for o in outcomes])
    assert stamps[0] != stamps[1]


async def test_a_batch_stops_taking_receipts_once_it_holds_max_batch_alerts(writer_for) -> None:  # type: ignore[no-untyped-def]
    """Five queued receipts of 3 alerts with a cap of 5 alerts: batches of 2, 2 and 1 receipts."""
    build, engine = writer_for
    writer = await build(gather_window=0.0, max_batch_alerts=5)
    jobs = [writer.enqueue(receipt(f"m{i}", alerts=3)) for i in range(5)]  # queued before the writer runs
    outcomes = await asyncio.wait_for(asyncio.gather(*jobs), HANG_GUARD)
    stamps = await _received_at(engine, [o.receipt_id for o in outcomes])
    batch_sizes = [len(list(group)) for _, group in itertools.groupby(stamps)]
    assert batch_sizes == [2, 2, 1]


@pytest.fixture
async def two_postgresql_writers(postgres_url: str) -> AsyncIterator:  # type: ignore[type-arg]
    """build(**BatchWriter options) -> a started writer with two writer tasks on PostgreSQL; and the
    names of the writer tasks that began each transaction, in order ("writer-0" is the first)."""
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    began_in: list[str] = []

    def began(_conn) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.current_task()  # the writer task whose greenlet runs this transaction
        if task and task.get_name().startswith("writer-"):  # not the test's own queries
            began_in.append(task.get_name())

    event.listen(engine.sync_engine, "begin", began)
    started: list[BatchWriter] = []

    async def build(**options: Any) -> BatchWriter:
        writer = BatchWriter(engine, ingest_policy(Settings()), writers=2, gather_window=0.0, **options)
        await writer.start()
        started.append(writer)
        return writer

    yield build, began_in, engine
    for writer in started:
        await writer.stop()
        await writer.aclose()
    await engine.dispose()


async def test_small_receipts_wait_for_the_busy_first_postgresql_writer(two_postgresql_writers) -> None:  # type: ignore[no-untyped-def]
    """With less than a full batch waiting, the second writer does not open a transaction of its own:
    receipts that arrive while the first writer commits go into its next transaction."""
    build, began_in, engine = two_postgresql_writers
    arriving: list[asyncio.Future] = []  # type: ignore[type-arg]
    writer = await build(max_batch_alerts=6)

    def more_while_the_first_transaction_runs(_conn) -> None:  # type: ignore[no-untyped-def]
        if len(arriving) == 1:
            arriving.extend(writer.enqueue(receipt(f"s{i}")) for i in range(4))  # 4 alerts < 6

    event.listen(engine.sync_engine, "begin", more_while_the_first_transaction_runs)
    arriving.append(writer.enqueue(receipt("first")))
    await asyncio.wait_for(asyncio.shield(arriving[0]), HANG_GUARD)
    outcomes = await asyncio.wait_for(asyncio.gather(*arriving), HANG_GUARD)
    stamps = await _received_at(engine, [o.receipt_id for o in outcomes])
    assert [len(list(group)) for _, group in itertools.groupby(stamps)] == [1, 4]
    assert began_in == ["writer-0", "writer-0"]


@pytest.mark.parametrize(("receipts", "alerts_each", "limits"), [
    (6, 3, {"max_batch_alerts": 6}),  # full by alerts: three batches of two receipts
    (6, 1, {"max_batch": 2}),  # full by receipts: three batches of two
])  # fmt: skip
async def test_the_second_postgresql_writer_takes_a_full_batch(  # type: ignore[no-untyped-def]
    two_postgresql_writers, receipts: int, alerts_each: int, limits: dict[str, int]
) -> None:
    build, began_in, engine = two_postgresql_writers
    writer = await build(**limits)
    jobs = [writer.enqueue(receipt(f"l{i}", alerts=alerts_each)) for i in range(receipts)]
    outcomes = await asyncio.wait_for(asyncio.gather(*jobs), HANG_GUARD)
    stamps = await _received_at(engine, [o.receipt_id for o in outcomes])
    assert [len(list(group)) for _, group in itertools.groupby(sorted(stamps))] == [2, 2, 2]
    assert "writer-1" in began_in


async def test_a_receipt_kept_waiting_by_a_stuck_first_writer_goes_to_the_second(two_postgresql_writers) -> None:  # type: ignore[no-untyped-def]
    """The first writer waits on a row lock (here: its receipt's claim, held by another connection);
    a small receipt queued behind it is committed by the second writer after HELPER_DELAY."""
    build, began_in, engine = two_postgresql_writers
    stuck, other = receipt("stuck"), receipt("other")
    async with engine.begin() as conn:  # an old claim on the stuck receipt's digest: it will be renewed
        await conn.execute(insert(receipt_claims).values(digest=stuck.digest, claimed_at=datetime(2000, 1, 1)))
    async with engine.connect() as locker:
        await locker.begin()
        await locker.execute(select(receipt_claims).where(receipt_claims.c.digest == stuck.digest).with_for_update())
        writer = await build()
        began = asyncio.Event()
        event.listen(engine.sync_engine, "begin", lambda _conn: began.set())
        first = writer.enqueue(stuck)
        await asyncio.wait_for(began.wait(), HANG_GUARD)  # its transaction runs; its claim waits for the lock
        second = await asyncio.wait_for(writer.enqueue(other), HANG_GUARD)
        assert not first.done()
        assert began_in.count("writer-1") == 1
        await locker.rollback()
    outcome = await asyncio.wait_for(first, HANG_GUARD)
    assert not outcome.duplicate and not second.duplicate


async def test_an_alert_that_retention_deletes_mid_batch_is_stored_again(postgres_url: str) -> None:
    """The referring tables have no foreign keys, so ingest must notice an alert deleted between reading
    its state and writing rows that refer to it (retention on PostgreSQL does not wait for the writer):
    the batch is retried and the alert stored anew, and no row refers to the deleted one. (On SQLite the
    writer holds the write lock from its first statement: retention's delete waits for the commit.)"""
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    writer, _ = local_writer(postgres_url, ingest_policy(Settings()), "FULL", engine=engine)
    await writer.start()
    try:
        (first_id,) = (await asyncio.wait_for(writer.enqueue(receipt("m")), HANG_GUARD)).alert_ids
        deleted: list[str] = []

        def delete_as_retention_would(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
            if not deleted and statement.lstrip().upper().startswith("UPDATE ALERTS"):
                deleted.append(statement)
                with sync_engine.begin() as other:  # another connection, committed before the batch writes
                    for table, column in (("events", "alert_id"), ("receipt_alerts", "alert_id"), ("alerts", "id")):
                        other.exec_driver_sql(f"DELETE FROM {table} WHERE {column} = {first_id}")

        sync_engine = engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", delete_as_retention_would)
        try:
            outcome = await asyncio.wait_for(writer.enqueue(receipt("m", alerts=2)), HANG_GUARD)
        finally:
            event.remove(sync_engine, "before_cursor_execute", delete_as_retention_would)
        assert deleted and first_id not in outcome.alert_ids and len(outcome.alert_ids) == 2
        assert outcome.events == {"firing": 2}
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(alerts.c.id))).scalars())
            linked = set((await conn.execute(select(receipt_alerts.c.alert_id))).scalars())
            evented = set((await conn.execute(select(events.c.alert_id))).scalars())
        assert stored == set(outcome.alert_ids) == linked == evented
    finally:
        await writer.stop()
        await writer.aclose()
        await engine.dispose()


async def test_retention_waiting_on_a_batch_keeps_the_alert_it_touched(postgres_url: str) -> None:
    """The other order: a batch has touched an old alert and written rows that refer to it when
    retention, which chose that alert before, tries to delete it. The delete waits for the batch's
    lock, checks again that the alert is old, and keeps it: nothing refers to a deleted alert."""
    engine = create_engine(postgres_url)
    await migrate.upgrade(engine)
    policy = ingest_policy(Settings())
    try:
        async with engine.begin() as conn:
            first = await conn.run_sync(lambda c: store_batch(c, [receipt("m")], now=datetime.now(UTC), policy=policy))
            (alert_id,) = first[0].alert_ids
            month_ago = datetime.now(UTC) - timedelta(days=30)
            await conn.execute(update(alerts).where(alerts.c.id == alert_id).values(last_seen_at=month_ago))
        async with engine.connect() as batch:
            async with batch.begin():
                again = receipt("m", alerts=2)  # the old alert and a new one: the old one is touched
                await batch.run_sync(lambda c: store_batch(c, [again], now=datetime.now(UTC), policy=policy))
                pruning = asyncio.create_task(
                    prune(engine, now=datetime.now(UTC), retention=timedelta(days=7), dedup_window=timedelta(hours=1))
                )
                await asyncio.sleep(0.5)
                assert not pruning.done()  # waiting on the batch's row lock
        assert (await asyncio.wait_for(pruning, HANG_GUARD)).alerts == 0
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(alerts.c.id))).scalars())
            for table in (events, receipt_alerts, notification_alerts):
                referred = set((await conn.execute(select(table.c.alert_id))).scalars())
                assert alert_id in referred and referred <= stored, table.name
    finally:
        await engine.dispose()


def test_an_error_without_a_message_is_described_by_its_type() -> None:
    """e.g. the TimeoutError of a connection attempt: describing it must not fail (it used to raise
    IndexError inside the writer, leaving the batch's requests unanswered)."""
    assert _describe(TimeoutError()) == "TimeoutError:"
    assert _describe(ValueError("bad\nsecond line")) == "ValueError:  bad"
