"""The Slack DM directory: recipient -> DM channel, kept in the database (restarts, replicas) and in memory."""

from __future__ import annotations

from receiver.store import migrate
from receiver.store.directory import DbSlackDirectory
from receiver.store.engine import create_engine


async def test_dm_channels_survive_a_restart_and_are_shared(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate.upgrade(engine)
        first = DbSlackDirectory(engine)
        assert await first.get("alice@example.com") is None
        await first.put("alice@example.com", "DALICE01")
        assert await first.get("alice@example.com") == "DALICE01"
        restarted = DbSlackDirectory(engine)  # a new process (or another replica) on the same database
        assert await restarted.get("alice@example.com") == "DALICE01"
        await restarted.put("alice@example.com", "DALICE02")
        assert await DbSlackDirectory(engine).get("alice@example.com") == "DALICE02"
        assert await restarted.get("bob@example.com") is None
    finally:
        await engine.dispose()
