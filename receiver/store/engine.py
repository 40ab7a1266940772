"""Database engines: async drivers, SQLite tuned for one writer, PostgreSQL as given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine_
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# People paste the URLs they know; map them to the async drivers we ship.
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def normalize_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`, `postgresql://` -> `postgresql+asyncpg://`."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def safe_url(url: str) -> str:
    """The URL with its password masked, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for `url`; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    url = normalize_url(url)
    if not is_sqlite(url):
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    engine = create_async_engine(url, **kwargs)
    _set_sqlite_pragmas(engine.sync_engine, sqlite_synchronous)
    return engine


def create_sqlite_writer_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """A synchronous engine on the same SQLite file, for the writer thread.

    The async driver runs every cursor call through a thread hop; a transaction of a dozen statements
    then costs milliseconds of hand-offs. The writer runs its whole transaction in one worker thread on
    a plain sqlite3 connection instead.
    """
    sync_url = make_url(normalize_url(url)).set(drivername="sqlite")
    engine = create_sync_engine_(sync_url, pool_size=1, max_overflow=0)
    _set_sqlite_pragmas(engine, sqlite_synchronous)

    @event.listens_for(engine, "connect")
    def _statement_journals_in_memory(dbapi_connection: Any, _record: Any) -> None:
        # Each multi-row INSERT inside the group commit keeps a statement journal (the pages it
        # changed, to undo just that statement if it fails). Past 64 KiB SQLite moves it to a temp
        # file: about a tenth of the write path's time went to writing those files. Bounded by
        # the pages one statement (a chunk of at most 64 rows) changes: a few MiB at most.
        dbapi_connection.execute("PRAGMA temp_store=MEMORY")

    return engine


WAL_CHECKPOINT_PAGES = 8000  # 4 KiB pages: about 32 MB of WAL between automatic checkpoints
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # after a checkpoint, a WAL file larger than this is truncated


def _set_sqlite_pragmas(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers (history API) run while the writer commits; FULL makes each commit
        # survive power loss, which is what "answer 200 only when stored" promises.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # Checkpoint every ~32 MB of WAL rather than SQLite's 4 MB: a page the writer dirties in every
        # commit (the last leaf of an index) is copied into the database once per checkpoint, so
        # rarer checkpoints copy far fewer pages (about 12 % of the write path's time at 4 MB). Every
        # connection gets it because whichever commits past the threshold runs the checkpoint.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
