"""A burst: 300 drift alerts over 30 models through a real Alertmanager, one message per owner and group.

The catalog gives each model its own owner (Slack and email); Alertmanager groups by [alertname, model],
so each owner should hear exactly once, in one message covering that model's 10 alerts.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import receiver_values
from tests.e2e.processes import alertmanager_config, api_alert, run_alertmanager, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = [f"m{i:02d}" for i in range(30)]
PER_MODEL = 10
TOTAL = len(MODELS) * PER_MODEL
MODELS_PER_CALL = 10  # three POST /api/v2/alerts calls of 100 alerts; a model never spans two calls
GROUP_INTERVAL = 2.0
QUIET = 4 * GROUP_INTERVAL
DEADLINE = 90.0


def owner(model: str) -> str:
    return f"owner-{model}@example.com"


def slack_user(model: str) -> str:
    return f"UOWN{model.upper()}"


def catalog() -> list[dict[str, Any]]:
    return [{"name": m, "version": "1.0.0", "owner": owner(m), "team": "ml-platform"} for m in MODELS]


def drift_alerts(models: list[str], starts_at: datetime) -> list[dict[str, Any]]:
    return [
        api_alert(
            {"alertname": "ModelDrift", "severity": "warning", "model": model, "feature": f"f{n}"},
            starts_at=starts_at,
            annotations={"summary": f"feature f{n} of {model} drifted"},
        )
        for model in models
        for n in range(PER_MODEL)
    ]


def test_burst_of_300_alerts_gives_one_message_per_owner_and_group(
    tmp_path: Path,
    slack_fake: Any,
    smtp_server: Any,
    alertmanager_bin: str,
    token_file: Path,
    start_receiver: Any,
) -> None:
    for model in MODELS:
        slack_fake.add_user(owner(model), slack_user(model))
    route = {"matchers": ["alertname=ModelDrift"], "slack": ["owner"], "email": ["owner"]}
    receiver = start_receiver(receiver_values(slack_fake, smtp_server, models=catalog(), routes=[route]))
    config = alertmanager_config(f"{receiver.url}/webhook", token_file, group_by=["alertname", "model"])

    def stored() -> list[dict[str, Any]]:
        return receiver.get_all("/api/v1/alerts", alertname="ModelDrift", limit=100)

    with run_alertmanager(alertmanager_bin, tmp_path, config) as am:
        for start in range(0, len(MODELS), MODELS_PER_CALL):
            am.post_alerts(drift_alerts(MODELS[start : start + MODELS_PER_CALL], datetime.now(UTC)))
        assert len(am.alerts()) == TOTAL

        wait_until(lambda: len(stored()) >= TOTAL, DEADLINE, f"{TOTAL} alerts in the history API", interval=0.5)
        wait_until(
            lambda: len(slack_fake.messages) >= len(MODELS) and len(smtp_server.received) >= len(MODELS),
            DEADLINE,
            f"{len(MODELS)} Slack messages and {len(MODELS)} emails",
        )
        time.sleep(QUIET)
        webhooks = am.webhook_counts()

    # Stored: 300 distinct alerts, 10 per model, each enriched with its model's owner.
    alerts = stored()
    assert len(alerts) == TOTAL
    assert len({a["id"] for a in alerts}) == TOTAL
    assert len({a["fingerprint"] for a in alerts}) == TOTAL
    assert Counter(a["labels"]["model"] for a in alerts) == dict.fromkeys(MODELS, PER_MODEL)
    assert {a["status"] for a in alerts} == {"firing"}
    assert all(a["model"] and a["model"]["owner"] == owner(a["labels"]["model"]) for a in alerts)

    # Slack: one DM per owner, covering the whole group, nothing doubled.
    messages = slack_fake.messages
    assert len(messages) == len(MODELS), Counter(m.channel for m in messages)
    assert sorted(m.channel for m in messages) == sorted(f"D{slack_user(m)}" for m in MODELS)
    for message in messages:
        model = next(m for m in MODELS if message.channel == f"D{slack_user(m)}")
        text = message.text or ""
        assert message.thread_ts is None
        assert text.startswith("FIRING") and f"Firing ({PER_MODEL})" in text and f"model={model}" in text
        assert all(f"model={other}" not in text for other in MODELS if other != model)

    # Email: one mail per owner, to that owner only.
    mails = smtp_server.received
    assert len(mails) == len(MODELS)
    assert sorted(tuple(m.rcpt_tos) for m in mails) == sorted((owner(m),) for m in MODELS)
    for mail in mails:
        model = next(m for m in MODELS if mail.rcpt_tos == [owner(m)])
        assert mail.message["Subject"].startswith(f"[FIRING:{PER_MODEL}]") and model in mail.message["Subject"]

    # The outbox: one sent notification per (channel, owner), each covering the group's 10 alerts.
    notifications = receiver.get_all("/api/v1/notifications", limit=100)
    assert len(notifications) == 2 * len(MODELS)
    assert {n["status"] for n in notifications} == {"sent"}
    assert Counter((n["channel"], n["recipient"]) for n in notifications).most_common(1)[0][1] == 1
    assert all(len(n["alert_ids"]) == PER_MODEL for n in notifications)
    assert len({i for n in notifications for i in n["alert_ids"]}) == TOTAL

    receipts = receiver.get_all("/api/v1/receipts", limit=100)
    assert not any(r["duplicate"] for r in receipts)
    per_group = Counter(r["group_key"] for r in receipts)
    assert len(per_group) == len(MODELS) and set(per_group.values()) == {1}, per_group
    assert {r["alert_count"] for r in receipts} == {PER_MODEL}
    print(f"\nburst: Alertmanager webhook attempts {webhooks}; receipts {len(receipts)}")
