"""`alert-receiver serve` with instruments attached from the outside, for finding bottlenecks.

    python -m bench.diagnose --port P [serve options]      (then GET /bench/stats)

Nothing in receiver/ is changed: this wraps, at import time,
- `BatchWriter._transaction` (one group commit): receipts per transaction and its wall time;
- every SQL statement of every SQLAlchemy engine (cursor events), and the write path's statements that
  go straight to the DBAPI cursor (`receiver.store.bulk.run_sql`, wrapped where it is imported): count
  and wall time per statement kind, as the caller sees it (through aiosqlite that includes the hop to
  the connection's thread and back to the event loop);
- aiosqlite's thread hand-off (`Connection._execute`): hops per receipt, time spent in the SQLite thread
  versus the time the caller waited for the answer.
The figures in the main table never come from this process; the instruments cost CPU themselves.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import defaultdict
from typing import Any

_lock = threading.Lock()
STATS: dict[str, Any] = {}


def reset() -> None:
    with _lock:
        STATS.clear()
        STATS.update(
            transactions=0,
            receipts=0,
            tx_seconds=0.0,
            tx_max_s=0.0,
            batch_hist=defaultdict(int),
            statements=defaultdict(lambda: [0, 0.0]),  # kind -> [count, wall seconds]
            hops=defaultdict(lambda: [0, 0.0, 0.0]),  # fn -> [count, thread seconds, caller wait seconds]
        )


reset()
_TABLE = re.compile(r"^\s*(INSERT INTO|UPDATE|DELETE FROM|SELECT .*? FROM|BEGIN|COMMIT)\s*(\w+)?", re.S | re.I)


def _kind(statement: str) -> str:
    head = statement.lstrip()[:400]
    m = _TABLE.match(head)
    if not m:
        return head.split(None, 1)[0].upper() if head else "?"
    verb = m.group(1).split()[0].upper()
    return f"{verb} {m.group(2) or ''}".strip()


def install() -> None:
    import aiosqlite.core
    from sqlalchemy import Engine, event

    import receiver.api.app as app_module
    from receiver.store import alert_writes, bulk
    from receiver.writer import BatchWriter

    original_tx = BatchWriter._transaction

    async def _transaction(self: BatchWriter, batch: list[Any]) -> Any:
        started = time.perf_counter()
        try:
            return await original_tx(self, batch)
        finally:
            elapsed = time.perf_counter() - started
            with _lock:
                STATS["transactions"] += 1
                STATS["receipts"] += len(batch)
                STATS["tx_seconds"] += elapsed
                STATS["tx_max_s"] = max(STATS["tx_max_s"], elapsed)
                STATS["batch_hist"][len(batch)] += 1

    BatchWriter._transaction = _transaction  # type: ignore[method-assign]

    original_execute = aiosqlite.core.Connection._execute

    async def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "?")
        spent = [0.0]

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] = time.perf_counter() - t0

        started = time.perf_counter()
        try:
            return await original_execute(self, timed, *args, **kwargs)
        finally:
            waited = time.perf_counter() - started
            with _lock:
                entry = STATS["hops"][name]
                entry[0] += 1
                entry[1] += spent[0]
                entry[2] += waited

    aiosqlite.core.Connection._execute = _execute  # type: ignore[method-assign]

    # On the Engine class: every engine the receiver makes (async engines' sync facades, a plain sync
    # engine for SQLite writes, whatever comes next) reports its statements.
    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        _record(_kind(statement) + (" (executemany)" if many else ""), conn.info["bench_t0"].pop())

    def _record(kind: str, started: float) -> None:
        with _lock:
            entry = STATS["statements"][kind]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    original_run_sql = bulk.run_sql

    def run_sql(conn: Any, sql: str, params: Any = ()) -> Any:
        started = time.perf_counter()
        try:
            return original_run_sql(conn, sql, params)
        finally:
            _record(_kind(sql), started)

    bulk.run_sql = run_sql  # type: ignore[assignment]
    alert_writes.run_sql = run_sql  # type: ignore[assignment]

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        with _lock:
            STATS["statements"]["COMMIT (dbapi)"][0] += 1

    original_create_app = app_module.create_app

    def create_app(settings: Any, **kwargs: Any) -> Any:
        app = original_create_app(settings, **kwargs)

        @app.get("/bench/stats", include_in_schema=False)
        async def stats() -> dict[str, Any]:
            with _lock:
                return snapshot()

        @app.post("/bench/reset", include_in_schema=False)
        async def do_reset() -> dict[str, str]:
            reset()
            return {"status": "reset"}

        return app

    app_module.create_app = create_app


def snapshot() -> dict[str, Any]:
    receipts = max(STATS["receipts"], 1)
    return {
        "transactions": STATS["transactions"],
        "receipts": STATS["receipts"],
        "receipts_per_transaction": STATS["receipts"] / max(STATS["transactions"], 1),
        "transaction_mean_ms": 1000 * STATS["tx_seconds"] / max(STATS["transactions"], 1),
        "transaction_max_ms": 1000 * STATS["tx_max_s"],
        "writer_busy_s": STATS["tx_seconds"],
        "batch_sizes": dict(sorted(STATS["batch_hist"].items())),
        "statements_per_receipt": {
            k: {"per_receipt": c / receipts, "mean_ms": 1000 * s / max(c, 1)}
            for k, (c, s) in sorted(STATS["statements"].items(), key=lambda kv: -kv[1][0])
        },
        "statements_total": {k: c for k, (c, _) in STATS["statements"].items()},
        "hops_total": {k: c for k, (c, _t, _w) in STATS["hops"].items()},
        "hop_wait_total_s": sum(w for _c, _t, w in STATS["hops"].values()),
        "hop_thread_total_s": sum(t for _c, t, _w in STATS["hops"].values()),
        "sqlite_hops_per_receipt": {
            k: {"per_receipt": c / receipts, "thread_ms": 1000 * t / max(c, 1), "caller_wait_ms": 1000 * w / max(c, 1)}
            for k, (c, t, w) in sorted(STATS["hops"].items(), key=lambda kv: -kv[1][0])
        },
    }


def main() -> int:
    install()
    from receiver.cli import main as receiver_main

    return receiver_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
