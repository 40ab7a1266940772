"""Two receiver processes on one PostgreSQL: each webhook stored once, each notification sent once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import _reset_postgres
from tests.delivery import delivery_settings
from tests.support import make_alert, make_payload, receiver_env, running_receiver

pytestmark = pytest.mark.postgres
GROUPS = 20


async def _post_to_both(bases: list[str], payloads: list[dict]) -> list[httpx.Response]:
    """Every payload to both replicas at the same moment, as two HA Alertmanagers behind a Service would."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{base}/webhook", json=payload) for payload in payloads for base in bases)
        )


def test_two_replicas_store_once_and_send_once(tmp_path: Path, postgres_server_url, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_reset_postgres(postgres_server_url))
    values = delivery_settings(slack_fake, smtp_server)
    values["models"] = [{"name": f"m{i:02d}", "owner": "alice@example.com"} for i in range(GROUPS)]
    values["routes"] = []
    values["dispatch"] = {"enabled": True, "poll_interval": "100ms", "slack_channel_interval": "0s"}
    config = tmp_path / "receiver.yaml"
    config.write_text(yaml.safe_dump(values))
    env = receiver_env(RECEIVER_DATABASE_URL=postgres_server_url)
    payloads = [
        make_payload([make_alert(model=f"m{i:02d}", feature=f"f{k}") for k in range(3)], group_key=f"g{i}")
        for i in range(GROUPS)
    ]
    with (
        running_receiver("--config", str(config), env=env, cwd=tmp_path) as (a, _),
        running_receiver("--config", str(config), env=env, cwd=tmp_path) as (b, _),
    ):
        answers = asyncio.run(_post_to_both([a, b], payloads))
        assert all(r.status_code == 200 for r in answers)
        assert sum(not r.json()["duplicate"] for r in answers) == GROUPS
        assert sum(r.json()["notifications"] for r in answers) == 2 * GROUPS
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(slack_fake.messages) < GROUPS or len(smtp_server.received) < GROUPS):
            time.sleep(0.2)
        time.sleep(1.0)  # both dispatchers keep polling meanwhile: a double send would show up now
        alerts = httpx.get(f"{a}/api/v1/alerts", params={"limit": 500}).json()["items"]
        sent = httpx.get(f"{b}/api/v1/notifications", params={"limit": 500, "status": "sent"}).json()["items"]
    assert len(alerts) == 3 * GROUPS
    assert len(sent) == 2 * GROUPS
    slack_groups = Counter(m.text.split("(")[1].split(")")[0] for m in slack_fake.messages)
    assert len(slack_fake.messages) == GROUPS and set(slack_groups.values()) == {1}
    subjects = Counter(m.message["Subject"] for m in smtp_server.received)
    assert len(smtp_server.received) == GROUPS and set(subjects.values()) == {1}
