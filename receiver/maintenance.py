"""Background upkeep inside `serve`: retention pruning on a timer."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.config import Settings
from receiver.store.retention import prune

log = logging.getLogger(__name__)


async def retention_loop(engine: AsyncEngine, settings: Settings) -> None:
    """Prune once shortly after start, then every `retention_interval`; errors are logged, not fatal."""
    await asyncio.sleep(5)
    while True:
        try:
            result = await prune(
                engine, now=datetime.now(UTC), retention=settings.retention, dedup_window=settings.dedup_window
            )
            if result.alerts or result.receipts:
                log.info("retention pruned %d alerts and %d receipts", result.alerts, result.receipts)
        except Exception:
            log.exception("retention pruning failed; will try again")
        await asyncio.sleep(settings.retention_interval.total_seconds())
