"""Bulk inserts for the write path, handed to the driver without SQLAlchemy's per-value processing.

A group commit writes about a dozen rows per alert. SQLAlchemy Core compiles its statements once, but
still runs a Python type processor on every value of every row (timezone handling for datetimes,
json.dumps for JSON), which was most of the writer's time. Here each value is converted once, straight
to what the driver takes (`Codec`), and the rows go to the cursor's executemany or, where ids must come
back, to one multi-row statement with RETURNING. The stored values are the ones the Core types would
have written (times in the same text form on SQLite; JSON as the same document, serialised compactly),
so every read path (Core `select`s with their result processors) is unchanged; a test compares rows
written both ways.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Table
from sqlalchemy.engine import Connection

# Rows per SQLite statement at most (64 rows × 19 columns stays far inside its 32,766 parameters).
_MAX_CHUNK_ROWS = 64


class Codec:
    """Python values -> what the connection's DBAPI driver stores for our column types."""

    def __init__(self, conn: Connection) -> None:
        self.postgres = conn.dialect.name == "postgresql"

    def time(self, moment: datetime | None) -> Any:
        """UTCDateTime: naive UTC; on SQLite as the text SQLAlchemy's DateTime writes (sortable)."""
        if moment is None:
            return None
        if self.postgres:
            if moment.tzinfo is not None and moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
            return moment.replace(tzinfo=None)
        return _sqlite_time(moment)

    @staticmethod
    def read_time(stored: Any) -> datetime:
        """What `time` stored, back as an aware UTC datetime (as UTCDateTime reads it)."""
        moment = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
        return moment.replace(tzinfo=UTC)

    @staticmethod
    def json(value: Any) -> str | None:
        """JSON columns hold text on both databases; None is SQL NULL."""
        return None if value is None else to_json(value).decode()


@lru_cache(maxsize=8192)
def _sqlite_time(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS.ffffff` of the UTC time. Cached: a batch converts each alert's startsAt
    twice (looking it up, inserting it) and its own `now` for every row, and the conversion costs
    more than a cache hit (about 2.7 against 0.4 µs on the bench machine)."""
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def insert_many(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """INSERT rows (tuples in `columns` order, already converted by Codec).

    One statement per table: rows as one JSON document on PostgreSQL (`_pg_json_insert`), one
    multi-row VALUES per chunk on SQLite (executemany releases and retakes the GIL around every row).
    """
    if not rows:
        return
    if Codec(conn).postgres:
        run_sql(conn, _pg_json_insert(table, tuple(columns)), _pg_rows(rows))
        return
    for sql, params in sqlite_chunks(_insert_head(table, columns), len(columns), rows):
        run_sql(conn, sql, params)


def run_sql(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run driver SQL (`?` on SQLite, `$n` on PostgreSQL) on the connection's DBAPI cursor; its rows.

    exec_driver_sql builds an execution context, a result object and its metadata around every
    statement: a fifth of the writer process's time at 10 alerts per webhook (py-spy). The write path's
    statements need none of it: they are plain text with parameters already in the driver's types,
    and their rows are read as plain tuples. The statement still runs inside the connection's
    transaction (same DBAPI connection).
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


def _insert_head(table: Table, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "


def sqlite_chunks(head: str, width: int, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(multi-row INSERT, flat parameters) per chunk of rows.

    Chunk sizes are powers of two up to 64 (100 rows: 64 + 32 + 4), so a table is written with at most
    seven distinct statements. sqlite3 keeps every distinct statement it prepared in a per-connection
    cache, and one statement per batch size (thousands of rows each) held about 80 MB in a storm.
    """
    start = 0
    while start < len(rows):
        size = min(_MAX_CHUNK_ROWS, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        yield f"{head}{_values_clause(width, size)}", tuple(chain.from_iterable(chunk))
        start += size


@lru_cache(maxsize=256)
def _values_clause(width: int, rows: int) -> str:
    row_sql = f"({', '.join('?' * width)})"
    return ", ".join([row_sql] * rows)


@dataclass(frozen=True)
class UpdateIf:
    """ON CONFLICT ... DO UPDATE SET each of `columns` = the new row's, WHERE `condition` holds.

    `condition` is SQL on the stored row with one `{}` where `value` is bound (e.g. "t.at <= {}").
    """

    columns: Sequence[str]
    condition: str
    value: Any


def insert_returning(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str],
    update: UpdateIf | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT (conflict) DO NOTHING (or DO UPDATE, see UpdateIf) RETURNING ...: the
    returned tuples of the rows inserted (or updated).

    One statement per chunk: multi-row VALUES on SQLite (executemany cannot return rows), rows as one
    JSON document on PostgreSQL.
    """
    postgres = Codec(conn).postgres
    action, extra = "DO NOTHING", ()
    if update is not None:
        assignments = ", ".join(f"{c} = excluded.{c}" for c in update.columns)
        action = f"DO UPDATE SET {assignments} WHERE {update.condition.format('$2' if postgres else '?')}"
        extra = (update.value,)
    tail = f"ON CONFLICT ({', '.join(conflict)}) {action} RETURNING {', '.join(returning)}"
    return list(_insert_with_tail(conn, table, columns, rows, tail, extra))


def insert_returning_ids(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> list[int]:
    """INSERT rows; the new ids, in the order of `rows`.

    Ids come from the table's own sequence, taken row after row (chunk after chunk on SQLite), so
    sorting what RETURNING gives back restores the rows' order (neither database promises RETURNING's).
    """
    return sorted(row[0] for row in _insert_with_tail(conn, table, columns, rows, "RETURNING id"))


def _insert_with_tail(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    tail: str,
    extra: tuple[Any, ...] = (),
) -> Iterator[tuple[Any, ...]]:
    """The rows returned by INSERT ... `tail`: one statement on PostgreSQL, one per chunk on SQLite.

    `extra` are parameters of `tail`, bound after the rows' ($2 on PostgreSQL, a trailing ? on SQLite).
    """
    if not rows:
        return
    if Codec(conn).postgres:
        sql = f"{_pg_json_insert(table, tuple(columns))} {tail}"
        yield from (tuple(r) for r in run_sql(conn, sql, _pg_rows(rows) + extra))
        return
    for sql, params in sqlite_chunks(_insert_head(table, columns), len(columns), rows):
        yield from (tuple(r) for r in run_sql(conn, f"{sql} {tail}", params + extra))


_PG_TYPES = {"JSON": "json", "DateTime": "timestamp", "Integer": "bigint", "Boolean": "boolean"}


@lru_cache(maxsize=32)
def _pg_json_insert(table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO t (a, b) SELECT (e->>0)::bigint, (e->>1)::json FROM jsonb_array_elements($1::jsonb) …`.

    All rows travel as one JSON array of arrays, serialised in Rust by pydantic_core and taken apart in
    C by the server. (asyncpg's array parameters run two ABC isinstance checks per element, which cost
    more than the rest of the write; executemany has the server plan and run one INSERT per row.)
    """
    fields = []
    for n, name in enumerate(columns):
        target = _PG_TYPES.get(table.c[name].type._type_affinity.__name__)
        fields.append(f"(e->>{n})::{target}" if target else f"e->>{n}")
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"SELECT {', '.join(fields)} FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(e, n) ORDER BY n"
    )


def _pg_rows(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return (to_json(rows).decode(),)
