"""Settings and helpers for delivery tests: the receiver wired to the Slack fake and the SMTP fake."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text, update

from receiver.dispatch import Dispatcher
from receiver.store.tables import notifications

CATALOG = [
    {
        "name": "fraud-detector",
        "version": "3.2.0",
        "owner": "alice@example.com",
        "team": "risk",
        "slack": "alice@example.com",
        "runbook_url": "https://runbooks.example.com/fraud-detector",
        "dashboard": {"uid": "ml-model", "slug": "model-overview"},
    }
]


def delivery_settings(slack_fake: Any, smtp_server: Any, **extra: Any) -> dict[str, Any]:
    """Config values: one catalogued model owned by alice; Slack and SMTP pointed at the fakes."""
    slack_fake.add_user("admin@example.com", "UADMIN01")
    values: dict[str, Any] = {
        "models": CATALOG,
        "grafana": {"url": "https://grafana.example.com"},
        "slack": {"token": slack_fake.token, "base_url": slack_fake.base_url, "timeout": 5},
        "smtp": {"host": smtp_server.host, "port": smtp_server.port, "sender": "alerts@example.com", "timeout": 5},
        "dispatch": {"enabled": False, "backoff_initial": "1s", "slack_channel_interval": "0s"},
        "routes": [
            {"matchers": ["alertname=ServiceDown"], "slack": ["admin@example.com"], "email": ["admin@example.com"]}
        ],
    }
    values.update(extra)
    return values


async def notification_rows(harness: Any) -> list[dict[str, Any]]:
    async with harness.state.engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM notifications ORDER BY id"))
        return [dict(r._mapping) for r in result.all()]


async def make_due(harness: Any) -> None:
    """Let time pass for the outbox: every pending notification becomes due now."""
    stmt = update(notifications).where(notifications.c.status == "pending")
    async with harness.state.engine.begin() as conn:
        await conn.execute(stmt.values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC)))


def dispatcher_for(harness: Any) -> Dispatcher:
    return Dispatcher.from_settings(harness.state.engine, harness.state.settings, harness.state.metrics)
