"""Slack recipient -> DM channel, cached in the database so lookups survive restarts and replicas."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.store.tables import slack_directory

_MEMO_MAX = 10_000  # recipients remembered in process; past that the memo starts over


class DbSlackDirectory:
    """Implements receiver.notifiers.slack.SlackDirectory over the slack_directory table.

    A recipient's DM channel never changes, so what was read or written once is also kept in process
    memory: every Slack message would otherwise cost a database round trip before it is sent.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._memo: dict[str, str] = {}

    async def get(self, recipient: str) -> str | None:
        if recipient in self._memo:
            return self._memo[recipient]
        query = select(slack_directory.c.dm_channel).where(slack_directory.c.recipient == recipient)
        async with self._engine.connect() as conn:
            found = (await conn.execute(query)).scalar()
        if found:
            self._remember(recipient, found)
        return found

    def _remember(self, recipient: str, dm_channel: str) -> None:
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[recipient] = dm_channel

    async def put(self, recipient: str, dm_channel: str) -> None:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        now = datetime.now(UTC)
        stmt = dialect.insert(slack_directory).values(recipient=recipient, dm_channel=dm_channel, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[slack_directory.c.recipient], set_={"dm_channel": dm_channel, "updated_at": now}
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
        self._remember(recipient, dm_channel)
