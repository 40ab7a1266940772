"""Alembic migrations: empty -> head -> base -> head on both databases, and head equals the tables."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
