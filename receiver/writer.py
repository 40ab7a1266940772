"""Group commit: concurrent webhook requests share one transaction, each answered after its commit.

SQLite allows one writer at a time, so many connections writing at once only queue on its lock;
one writer that takes everything waiting and commits it together pays for one fsync instead of one
per request. On PostgreSQL several writers run side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.engine import create_engine, create_sqlite_writer_engine, is_sqlite
from receiver.store.ingest import ConcurrentInsert, IncomingReceipt, IngestOutcome, IngestPolicy, store_batch

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The receipt could not be committed; Alertmanager should retry (HTTP 503)."""


@dataclass
class _Job:
    receipt: IncomingReceipt
    done: asyncio.Future[IngestOutcome]


class BatchWriter:
    """Owns the write path; `enqueue` returns a future that is done once the receipt is committed."""

    restarts = 0  # a thread of this process is never restarted (see ProcessWriter.restarts)
    stalls = 0  # nor killed for not answering (see ProcessWriter.stalls)

    def __init__(
        self,
        engine: AsyncEngine,
        policy: IngestPolicy,
        *,
        writers: int = 1,
        max_batch: int = 64,
        max_batch_alerts: int | None = None,
        sqlite_engine: Engine | None = None,
        gather_window: float = 0.003,
        sqlite_in_thread: bool = True,
    ) -> None:
        self._engine = engine
        self._sqlite_engine = sqlite_engine  # set: transactions run in a worker thread on this engine
        self._policy = policy
        self._writers = writers
        self._max_batch = max_batch
        self._max_batch_alerts = 2**62 if max_batch_alerts is None else max_batch_alerts
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._queued_alerts = 0  # alerts of the receipts in the queue (not yet taken into a batch)
        self._queued_at: deque[float] = deque()  # when each queued receipt arrived, oldest first
        self._full_batch_waits = asyncio.Event()  # set by enqueue when a full batch is queued (_full_batch_queued)
        self._tasks: list[asyncio.Task[None]] = []
        self._incoming = 0  # requests being read or prepared: about to be submitted
        self._in_flight = 0  # queued or being committed
        self._peak = 0  # most receipts in flight at once, over the last second
        self._peak_since = 0.0
        self._arrived = asyncio.Event()
        self.gather_window = gather_window
        # False only where nothing else needs the event loop while a commit runs (the writer process):
        # the hop to a thread and back, and the two threads' turns at the GIL, cost more than they give.
        self._sqlite_in_thread = sqlite_in_thread

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(n > 0), name=f"writer-{n}") for n in range(self._writers)]

    async def stop(self) -> None:
        """Finish what is queued, then stop the writers."""
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Around reading and preparing a request: the writer waits briefly for it (see `_gather`)."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._arrived.set()

    def enqueue(self, receipt: IncomingReceipt) -> asyncio.Future[IngestOutcome]:
        """Queue a receipt now; the future is done once it is committed (or fails: StorageUnavailable)."""
        if not self.running:
            raise StorageUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        job = _Job(receipt, loop.create_future())
        self._queue.put_nowait(job)
        self._queued_alerts += len(receipt.alerts)
        self._queued_at.append(loop.time())
        if self._full_batch_queued():
            self._full_batch_waits.set()
        self._in_flight += 1
        now = loop.time()
        if now - self._peak_since > 1.0:
            self._peak, self._peak_since = 0, now
        self._peak = max(self._peak, self._in_flight)
        self._arrived.set()
        return job.done

    async def _gather(self, batch: list[_Job]) -> None:
        """Fill `batch` from the queue; while more requests are on their way in, wait a little for them.

        A commit costs about the same for one receipt as for twenty (most of it is writing the index
        pages the batch touched, and one fsync), so under load it pays to wait a few milliseconds for
        the requests already being read and parsed instead of committing them one transaction later.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gather_window
        alerts = sum(len(job.receipt.alerts) for job in batch)
        while True:
            while len(batch) < self._max_batch and alerts < self._max_batch_alerts and not self._queue.empty():
                batch.append(self._take())
                alerts += len(batch[-1].receipt.alerts)
            if alerts >= self._max_batch_alerts:
                return
            remaining = deadline - loop.time()
            expected = max(self._peak, len(batch) + self._incoming)
            if len(batch) >= min(expected, self._max_batch) or remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    def _take(self) -> _Job:
        return self._taken(self._queue.get_nowait())

    def _taken(self, job: _Job) -> _Job:
        self._queued_alerts -= len(job.receipt.alerts)
        self._queued_at.popleft()  # the queue is first in, first out: this was the oldest
        return job

    def _full_batch_queued(self) -> bool:
        return self._queue.qsize() >= self._max_batch or self._queued_alerts >= self._max_batch_alerts

    async def _first_job(self, helper: bool) -> _Job:
        """The next receipt for this writer; a helper waits for a full batch or a receipt kept waiting.

        The first writer takes whatever arrives. The others start a transaction only while a full
        batch is queued (max_batch receipts or max_batch_alerts alerts; the first writer is then busy)
        or the oldest queued receipt has waited HELPER_DELAY (the first writer is stuck, e.g. on a
        lock): with small receipts, two transactions of eight receipts each cost PostgreSQL more than
        one of sixteen (A/B at 1 alert/payload: 1,800 against 2,280 requests/s), while a queue of
        large receipts is still shared (at 100 alerts/payload one writer alone managed 123 against
        159 requests/s with two).
        """
        if not helper:
            return self._taken(await self._queue.get())
        loop = asyncio.get_running_loop()
        while not self._full_batch_queued():
            waited = loop.time() - self._queued_at[0] if self._queued_at else 0.0
            if waited >= HELPER_DELAY:
                break
            self._full_batch_waits.clear()  # set again by enqueue once a full batch is queued
            try:  # a receipt that arrives meanwhile is looked at within HELPER_DELAY at most
                await asyncio.wait_for(self._full_batch_waits.wait(), HELPER_DELAY - waited)
            except TimeoutError:
                pass
        return self._take()

    async def _run(self, helper: bool) -> None:
        while True:
            batch = [await self._first_job(helper)]
            await self._gather(batch)
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug here must not leave requests waiting or end the writer
                log.exception("writer: committing a batch failed unexpectedly")
                for job in batch:
                    _settle(job, error=StorageUnavailable(type(exc).__name__))
            finally:
                self._in_flight -= len(batch)
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            results = await self._transaction_with_retry(batch)
        except Exception as exc:  # one bad receipt must not sink the others: retry them one by one
            if len(batch) == 1:
                log.error("storing receipt failed: %s", _describe(exc))
                _settle(batch[0], error=StorageUnavailable(_describe(exc)))
                return
            for job in batch:
                await self._commit([job])
            return
        for job, outcome in zip(batch, results, strict=True):
            _settle(job, outcome=outcome)

    async def _transaction_with_retry(self, batch: list[_Job]) -> list[IngestOutcome]:
        """Another replica storing the same alert at the same moment is normal; reading again resolves it."""
        for attempt in range(3):
            try:
                return await self._transaction(batch)
            except ConcurrentInsert:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _transaction(self, batch: list[_Job]) -> list[IngestOutcome]:
        receipts = [job.receipt for job in batch]
        now = datetime.now(UTC)
        if self._sqlite_engine is not None:
            if not self._sqlite_in_thread:
                return self._sqlite_transaction(receipts, now)
            return await asyncio.to_thread(self._sqlite_transaction, receipts, now)
        async with self._engine.begin() as conn:
            return await conn.run_sync(self._store_all, receipts, now)

    def _sqlite_transaction(self, receipts: list[IncomingReceipt], now: datetime) -> list[IngestOutcome]:
        assert self._sqlite_engine is not None
        with self._sqlite_engine.begin() as conn:
            return self._store_all(conn, receipts, now)

    def _store_all(self, conn: Connection, receipts: list[IncomingReceipt], now: datetime) -> list[IngestOutcome]:
        return store_batch(conn, receipts, now=now, policy=self._policy)

    async def aclose(self) -> None:
        if self._sqlite_engine is not None:
            self._sqlite_engine.dispose()


POSTGRES_BATCH_ALERTS = 300
# How long a queued receipt waits for the busy first writer before a helper takes it: longer than a
# normal transaction under load (10-20 ms), far shorter than Alertmanager's patience.
HELPER_DELAY = 0.1
# A second transaction runs beside the first only while a full batch waits (see `_first_job`); four
# writers side by side gave 8 % fewer webhooks/s than two in earlier A/B runs (more contention).
POSTGRES_WRITERS = 2


def local_writer(
    url: str,
    policy: IngestPolicy,
    sqlite_synchronous: str,
    *,
    engine: AsyncEngine | None = None,
    gather_window: float | None = None,
    sqlite_in_thread: bool = True,
    statement_timeout: float | None = None,
) -> tuple[BatchWriter, AsyncEngine]:
    """A writer in this process for `url`, and the engine it uses.

    SQLite: one writer thread on an engine of its own, committing with `sqlite_synchronous` (FULL: an
    answered webhook survives power loss), waiting briefly for requests being read (see `_gather`).
    PostgreSQL: up to POSTGRES_WRITERS writers on `engine`, each taking about POSTGRES_BATCH_ALERTS
    alerts at most; the second starts a transaction only while a full batch waits or a receipt has
    waited HELPER_DELAY (see `_first_job`), so a burst of large payloads is spread over both instead
    of waiting behind the one that took the whole queue (p99 at 100 alerts/payload: about 300 -> 200
    ms), and small receipts share one transaction.
    `statement_timeout` (seconds, PostgreSQL, a new engine only): the database cancels a statement
    that runs longer, so one left behind by a writer process killed for stalling cannot hold locks or
    a backend on its own (PostgreSQL does not notice a vanished client while the statement waits).
    """
    if engine is None:
        timeout = {} if statement_timeout is None or is_sqlite(url) else _pg_statement_timeout(statement_timeout)
        engine = create_engine(url, sqlite_synchronous="NORMAL", **timeout)
    sqlite_engine = create_sqlite_writer_engine(url, sqlite_synchronous=sqlite_synchronous) if is_sqlite(url) else None
    if gather_window is None:
        gather_window = 0.003 if sqlite_engine else 0.0
    writer = BatchWriter(
        engine,
        policy,
        max_batch_alerts=None if sqlite_engine else POSTGRES_BATCH_ALERTS,
        writers=1 if sqlite_engine else POSTGRES_WRITERS,
        sqlite_engine=sqlite_engine,
        gather_window=gather_window,
        sqlite_in_thread=sqlite_in_thread,
    )
    return writer, engine


def _pg_statement_timeout(seconds: float) -> dict[str, Any]:
    return {"connect_args": {"server_settings": {"statement_timeout": str(max(1, int(seconds * 1000)))}}}


def _settle(job: _Job, *, outcome: IngestOutcome | None = None, error: Exception | None = None) -> None:
    if job.done.done():  # the request went away (client disconnected); the commit stands
        return
    if error is not None:
        job.done.set_exception(error)
    else:
        job.done.set_result(outcome)  # type: ignore[arg-type]


def _describe(exc: BaseException) -> str:
    """A one-line error without SQL parameters (they may hold label values or secrets)."""
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)
    first_line = (str(orig or exc).splitlines() or [""])[0]  # TimeoutError() has no message at all
    return f"{name}: {type(orig).__name__ if orig else ''} {first_line[:200]}".strip()
