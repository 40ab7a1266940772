"""PostgreSQL for the benchmark: a fresh database per run on the server at the admin URL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url_from_env() -> str:
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("RECEIVER_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL
    return plain(url)


def plain(url: str) -> str:
    """asyncpg wants postgresql://, SQLAlchemy URLs may say postgresql+asyncpg://."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{name}"


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def reachable(admin_url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        asyncio.run(_admin(admin_url, "SELECT 1"))
    except Exception as exc:  # noqa: BLE001 (any failure means: skip PostgreSQL, say why)
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def fresh_database(admin_url: str, prefix: str = "bench") -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random>; yields its plain URL; drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fetch(url: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def fetch(url: str, sql: str) -> list[Any]:
    return asyncio.run(_fetch(url, sql))


def server_settings(admin_url: str) -> dict[str, str]:
    names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")
    wanted = ", ".join(f"'{n}'" for n in names)
    rows = fetch(admin_url, f"SELECT name, setting, unit FROM pg_settings WHERE name IN ({wanted})")
    found = {r["name"]: f"{r['setting']}{'' if not r['unit'] else ' ' + r['unit']}" for r in rows}
    found["server_version"] = fetch(admin_url, "SHOW server_version")[0][0]
    return found
