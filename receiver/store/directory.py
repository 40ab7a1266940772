"""Slack recipient -> DM channel, cached in the database so lookups survive restarts and replicas."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.tables import slack_directory


class DbSlackDirectory:
    """Implements receiver.notifiers.slack.SlackDirectory over the slack_directory table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, recipient: str) -> str | None:
        query = select(slack_directory.c.dm_channel).where(slack_directory.c.recipient == recipient)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def put(self, recipient: str, dm_channel: str) -> None:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        now = datetime.now(UTC)
        stmt = dialect.insert(slack_directory).values(recipient=recipient, dm_channel=dm_channel, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[slack_directory.c.recipient], set_={"dm_channel": dm_channel, "updated_at": now}
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
