"""The seed scenario, end to end: "if service A does not answer for 5 minutes, send the admin a Slack DM
and an email", with real Prometheus and Alertmanager and durations scaled down to seconds.

    service-a (http.server) <-scrape 1s- Prometheus --ServiceDown (for: 2s)--> Alertmanager
        --webhook (Bearer token from a file)--> alert-receiver --> Slack fake (DM) + SMTP fake (email)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import receiver_values
from tests.e2e.processes import (
    HttpTarget,
    alertmanager_config,
    run_alertmanager,
    run_prometheus,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_EMAIL = "admin@example.com"
ADMIN_DM = "DUADMIN01"  # delivery_settings registers the admin as UADMIN01; the fake's DM ids are "D" + id
GROUP_INTERVAL = 2.0
# After a message arrives, wait this long to see that no second one follows: a few group_intervals,
# plenty of Prometheus re-sends (every 1 s) and dispatcher polls (every 200 ms).
QUIET = 4 * GROUP_INTERVAL
DEADLINE = 60.0

RULES = {
    "groups": [
        {
            "name": "service-a",
            "interval": "1s",
            "rules": [
                {
                    "alert": "ServiceDown",
                    "expr": 'up{job="service-a"} == 0',
                    "for": "2s",  # "for 5 minutes", scaled down
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "service-a does not answer"},
                }
            ],
        }
    ]
}


def prometheus_config(target: HttpTarget, alertmanager_url: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [{"job_name": "service-a", "static_configs": [{"targets": [target.address]}]}],
    }


def test_service_a_down_pages_admin_once_then_resolves_in_the_same_thread(
    tmp_path: Path,
    slack_fake: Any,
    smtp_server: Any,
    alertmanager_bin: str,
    prometheus_bin: str,
    token_file: Path,
    start_receiver: Any,
) -> None:
    receiver = start_receiver(receiver_values(slack_fake, smtp_server))
    am_config = alertmanager_config(f"{receiver.url}/webhook", token_file, group_by=["alertname"])

    def admin_dms() -> list[Any]:
        return [m for m in slack_fake.messages if m.channel == ADMIN_DM]

    # The webhook really needs the token Alertmanager reads from the file.
    unauthorised = httpx.post(f"{receiver.url}/webhook", json={}, timeout=10)
    assert unauthorised.status_code == 401

    target = HttpTarget()
    target.start()
    try:
        with (
            run_alertmanager(alertmanager_bin, tmp_path, am_config) as am,
            run_prometheus(prometheus_bin, tmp_path, prometheus_config(target, am.url), RULES) as prom,
        ):
            wait_until(lambda: prom.query('up{job="service-a"} == 1'), DEADLINE, "Prometheus scrapes service-a")
            wait_until(prom.active_alertmanagers, DEADLINE, "Prometheus discovers Alertmanager")
            assert prom.alerts() == [], "nothing should fire while service-a answers"

            # Service A stops answering: after `for` it fires, and the admin hears about it once.
            target.stop()
            wait_until(
                lambda: admin_dms() and smtp_server.received, DEADLINE, "a firing Slack DM and email to the admin"
            )
            time.sleep(QUIET)
            firing_dms, firing_mails = admin_dms(), smtp_server.received
            assert len(firing_dms) == 1, [m.text for m in firing_dms]
            assert len(firing_mails) == 1, [m.message["Subject"] for m in firing_mails]
            assert len(slack_fake.messages) == 1, "nobody but the admin gets a Slack message"
            (firing_dm,) = firing_dms
            (firing_mail,) = firing_mails
            assert firing_dm.thread_ts is None
            assert "FIRING" in (firing_dm.text or "") and "ServiceDown" in (firing_dm.text or "")
            assert f"instance={target.address}" in (firing_dm.text or "")
            assert firing_mail.rcpt_tos == [ADMIN_EMAIL]
            assert "FIRING" in firing_mail.message["Subject"] and "ServiceDown" in firing_mail.message["Subject"]
            assert firing_mail.message["Message-ID"]

            # Service A answers again: one resolved message, threaded under the firing one, per channel.
            target.start()
            wait_until(
                lambda: len(admin_dms()) >= 2 and len(smtp_server.received) >= 2,
                DEADLINE,
                "a resolved Slack DM and email to the admin",
            )
            time.sleep(QUIET)
            webhooks = am.webhook_counts()
            receipts = receiver.get_all("/api/v1/receipts", limit=100)
    finally:
        target.stop()

    dms, mails = admin_dms(), smtp_server.received
    assert len(dms) == 2, [m.text for m in dms]
    assert len(mails) == 2, [m.message["Subject"] for m in mails]
    resolved_dm, resolved_mail = dms[1], mails[1]
    assert "RESOLVED" in (resolved_dm.text or "")
    assert resolved_dm.thread_ts == firing_dm.ts
    # ... and the firing DM itself is rewritten once to show the resolution
    assert [(u["channel"], u["ts"]) for u in slack_fake.updates] == [(ADMIN_DM, firing_dm.ts)]
    assert resolved_mail.rcpt_tos == [ADMIN_EMAIL]
    assert "RESOLVED" in resolved_mail.message["Subject"]
    assert resolved_mail.message["In-Reply-To"] == firing_mail.message["Message-ID"]
    assert firing_mail.message["Message-ID"] in (resolved_mail.message["References"] or "")

    # History: one occurrence of ServiceDown for service-a, resolved, with its two transitions in order.
    (alert,) = receiver.get("/api/v1/alerts", alertname="ServiceDown")["items"]
    assert alert["status"] == "resolved"
    assert alert["labels"]["job"] == "service-a" and alert["labels"]["instance"] == target.address
    assert alert["resolved_at"] is not None and alert["ends_at"] is not None
    detail = receiver.get(f"/api/v1/alerts/{alert['id']}")
    assert [e["kind"] for e in detail["events"]] == ["firing", "resolved"]

    # Alertmanager sent one firing and one resolved webhook, no more (nothing failed, nothing repeated).
    assert [r["status"] for r in sorted(receipts, key=lambda r: r["id"])] == ["firing", "resolved"]
    assert not any(r["duplicate"] for r in receipts)
    print(f"\nseed scenario: Alertmanager webhook attempts {webhooks}, receipts {len(receipts)}")
