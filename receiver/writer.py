"""Group commit: concurrent webhook requests share one transaction, each answered after its commit.

SQLite allows one writer at a time, so many connections writing at once only queue on its lock;
one writer that takes everything waiting and commits it together pays for one fsync instead of one
per request. On PostgreSQL several writers run side by side.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.ingest import ConcurrentInsert, IncomingReceipt, IngestOutcome, IngestPolicy, store_batch

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The receipt could not be committed; Alertmanager should retry (HTTP 503)."""


@dataclass
class _Job:
    receipt: IncomingReceipt
    done: asyncio.Future[IngestOutcome]


class BatchWriter:
    """Owns the write path; `submit` returns once the receipt is committed."""

    def __init__(
        self,
        engine: AsyncEngine,
        policy: IngestPolicy,
        *,
        writers: int = 1,
        max_batch: int = 64,
        sqlite_engine: Engine | None = None,
    ) -> None:
        self._engine = engine
        self._sqlite_engine = sqlite_engine  # set: transactions run in a worker thread on this engine
        self._policy = policy
        self._writers = writers
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"writer-{n}") for n in range(self._writers)]

    async def stop(self) -> None:
        """Finish what is queued, then stop the writers."""
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def submit(self, receipt: IncomingReceipt) -> IngestOutcome:
        """Queue a receipt and wait for its commit; StorageUnavailable when it could not be stored."""
        if not self._tasks:
            raise StorageUnavailable("the writer is not running")
        job = _Job(receipt, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
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
    return f"{name}: {type(orig).__name__ if orig else ''} {str(orig or exc).splitlines()[0][:200]}".strip()
