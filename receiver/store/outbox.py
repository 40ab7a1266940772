"""The outbox: notifications waiting to be sent, claimed by dispatchers, recorded when done."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.store.tables import notifications


async def pending_stats(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """How many notifications are pending, and when the oldest was created."""
    query = select(func.count(), func.min(notifications.c.created_at)).where(notifications.c.status == "pending")
    count, oldest = (await conn.execute(query)).one()
    if isinstance(oldest, str):  # SQLite's aggregate loses the column type
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return count, oldest
