"""Shared fixtures: databases (SQLite and PostgreSQL), settings, an in-process app client."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from receiver.api.app import create_app
from receiver.config import Settings
from receiver.store.engine import create_engine

pytest_plugins = ["tests.fakes.slack_api", "tests.fakes.smtp_server"]

# PostgreSQL comes from the environment; where none answers the tests skip, unless CI says it must.
POSTGRES_ADMIN_URL = os.environ.get(
    "RECEIVER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("RECEIVER_TEST_REQUIRE_POSTGRES") == "1"


async def _create_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def _drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    name = f"alert_receiver_test_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_create_database(POSTGRES_ADMIN_URL, name))
    except Exception as exc:  # no server, no permission: say which
        reason = f"PostgreSQL not reachable at RECEIVER_TEST_POSTGRES_URL={POSTGRES_ADMIN_URL!r}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (RECEIVER_TEST_REQUIRE_POSTGRES=1 forbids skipping)")
        pytest.skip(reason)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_drop_database(POSTGRES_ADMIN_URL, name))


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a new SQLite file and on an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'receiver.db'}"
    url = request.getfixturevalue("postgres_server_url")
    asyncio.run(_reset_postgres(url))
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """An emptied PostgreSQL database, for behaviour only PostgreSQL has (concurrent writers)."""
    asyncio.run(_reset_postgres(postgres_server_url))
    return postgres_server_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'receiver.db'}"


@pytest.fixture
def make_settings(db_url: str) -> Callable[..., Settings]:
    """Settings for tests: the parametrized database, no dispatcher unless asked for."""

    def build(**values: Any) -> Settings:
        values.setdefault("database_url", db_url)
        values.setdefault("dispatch", {"enabled": False})
        return Settings(**values)

    return build


class AppHarness:
    """An app with its lifespan running, an HTTP client on it, and its state."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.state = app.state.receiver

    async def post_webhook(self, payload: Any, **kwargs: Any) -> httpx.Response:
        return await self.client.post("/webhook", json=payload, **kwargs)

    async def scalar(self, sql: str) -> Any:
        async with self.state.engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()


@pytest.fixture
def start_app() -> Callable[[Settings], Any]:
    """Start an app for given settings: `async with start_app(settings) as harness:`."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(settings: Settings, **kwargs: Any) -> AsyncIterator[AppHarness]:
        app = create_app(settings, **kwargs)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as client:
                yield AppHarness(app, client)

    return start


@pytest.fixture
async def harness(make_settings: Callable[..., Settings], start_app: Any) -> AsyncIterator[AppHarness]:
    """The receiver in-process with default settings on the parametrized database."""
    async with start_app(make_settings()) as h:
        yield h
