"""Fan-out through the real slack-sdk and aiosmtplib to local fakes: grouping, threading, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from receiver.config import Settings
from tests.delivery import delivery_settings, dispatcher_for, make_due, notification_rows
from tests.support import load_payload, make_alert, make_payload


@pytest.fixture
async def wired(make_settings, start_app, slack_fake, smtp_server) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(**delivery_settings(slack_fake, smtp_server))) as h:
        h.dispatcher = dispatcher_for(h)
        yield h
        await h.dispatcher.stop()


async def test_a_group_is_one_message_per_recipient_and_channel(wired, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    r = await wired.post_webhook(load_payload("ha-duplicate-peer-a"))  # three drift alerts, one owner
    assert r.json()["notifications"] == 2
    assert await wired.dispatcher.run_once() == 2
    assert len(slack_fake.messages) == 1 and len(smtp_server.received) == 1
    message = slack_fake.messages[0]
    assert message.channel == "DUALICE01"  # the DM opened for alice, looked up by email
    assert message.blocks[0]["text"]["text"] == "[FIRING:3] ModelPredictionDrift fraud-detector"
    assert message.text.startswith("FIRING: ModelPredictionDrift (fraud-detector v3.2.0)")
    mail = smtp_server.received[0]
    assert mail.rcpt_tos == ["alice@example.com"]
    assert mail.message["Subject"] == "[FIRING:3] ModelPredictionDrift fraud-detector"
    assert mail.message["Message-ID"] and mail.message["Date"]
    assert {p.get_content_type() for p in mail.message.iter_parts()} == {"text/plain", "text/html"}


async def test_sent_is_never_sent_again(wired, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    await wired.post_webhook(load_payload("ha-duplicate-peer-a"))
    await wired.post_webhook(load_payload("ha-duplicate-peer-b"))  # HA duplicate
    await wired.dispatcher.run_once()
    await make_due(wired)
    assert await wired.dispatcher.run_once() == 0
    assert len(slack_fake.messages) == 1 and len(smtp_server.received) == 1
    assert [r["status"] for r in await notification_rows(wired)] == ["sent", "sent"]


async def test_resolved_threads_under_firing_and_updates_it(wired, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    await wired.post_webhook(load_payload("service-down-firing"))
    await wired.dispatcher.run_once()
    await wired.post_webhook(load_payload("service-down-resolved"))
    await wired.dispatcher.run_once()
    firing, resolved = slack_fake.messages
    assert firing.thread_ts is None
    assert resolved.thread_ts == firing.ts and resolved.channel == firing.channel
    assert resolved.blocks[0]["text"]["text"] == "[RESOLVED:1] ServiceDown"
    updates = slack_fake.calls_to("chat.update")
    assert len(updates) == 1 and updates[0]["ts"] == firing.ts
    assert "RESOLVED" in updates[0]["text"]
    first_mail, second_mail = smtp_server.received
    assert second_mail.message["In-Reply-To"] == first_mail.message["Message-ID"]
    assert second_mail.message["References"] == first_mail.message["Message-ID"]
    assert [m.rcpt_tos for m in smtp_server.received] == [["admin@example.com"]] * 2  # the ServiceDown route


async def test_rate_limit_honours_retry_after_then_sends_once(wired, slack_fake) -> None:  # type: ignore[no-untyped-def]
    slack_fake.rate_limit_next("chat.postMessage", times=1, retry_after=120)
    await wired.post_webhook(load_payload("service-down-firing"))
    await wired.dispatcher.run_once()
    slack_row = next(r for r in await notification_rows(wired) if r["channel"] == "slack")
    assert slack_row["status"] == "pending" and slack_row["reason"] == "slack_ratelimited"
    waited = (_as_dt(slack_row["next_attempt_at"]) - _as_dt(slack_row["created_at"])).total_seconds()
    assert waited >= 120  # not the 1 s backoff: Slack said 120
    assert await wired.dispatcher.run_once() == 0  # not due yet
    await make_due(wired)
    await wired.dispatcher.run_once()
    assert len(slack_fake.messages) == 1
    assert [r["status"] for r in await notification_rows(wired)] == ["sent", "sent"]


async def test_server_errors_retry_until_delivered(wired, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    slack_fake.server_error_next("chat.postMessage", times=2)
    smtp_server.fail_next("RCPT", times=1)  # 451: temporary
    await wired.post_webhook(load_payload("service-down-firing"))
    for _ in range(3):
        await wired.dispatcher.run_once()
        await make_due(wired)
    rows = await notification_rows(wired)
    assert [r["status"] for r in rows] == ["sent", "sent"]
    assert {r["channel"]: r["attempts"] for r in rows} == {"slack": 3, "email": 2}
    assert len(slack_fake.messages) == 1 and len(smtp_server.received) == 1


async def test_permanent_failures_fail_at_once_with_reason(make_settings, start_app, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    values = delivery_settings(
        slack_fake,
        smtp_server,
        routes=[{"matchers": [], "slack": ["nobody@example.com"], "email": ["nobody@example.com"]}],
    )
    smtp_server.fail_next("RCPT", times=1, reply="550 5.1.1 No such user")
    async with start_app(make_settings(**values)) as h:
        await h.post_webhook(load_payload("service-down-firing"))
        await dispatcher_for(h).run_once()
        rows = {r["channel"]: r for r in await notification_rows(h)}
    assert rows["slack"]["status"] == "failed" and rows["slack"]["reason"] == "slack_users_not_found"
    assert rows["email"]["status"] == "failed" and rows["email"]["reason"].startswith("smtp_")
    assert rows["slack"]["attempts"] == 1 and rows["email"]["attempts"] == 1


async def test_temporary_failure_gives_up_after_the_configured_age(
    make_settings, start_app, slack_fake, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    values = delivery_settings(slack_fake, smtp_server)
    values["dispatch"] = dict(values["dispatch"], give_up_after="0s")
    slack_fake.server_error_next("chat.postMessage", times=1)
    async with start_app(make_settings(**values)) as h:
        await h.post_webhook(load_payload("service-down-firing"))
        await dispatcher_for(h).run_once()
        slack = next(r for r in await notification_rows(h) if r["channel"] == "slack")
    assert slack["status"] == "failed" and slack["reason"].startswith("gave_up:slack_")


async def test_failed_notification_can_be_requeued_over_the_api(wired, slack_fake) -> None:  # type: ignore[no-untyped-def]
    slack_fake.fail_next("chat.postMessage", times=1, error="channel_not_found")
    await wired.post_webhook(load_payload("service-down-firing"))
    await wired.dispatcher.run_once()
    failed = (await wired.client.get("/api/v1/notifications", params={"status": "failed"})).json()["items"]
    assert [n["reason"] for n in failed] == ["slack_channel_not_found"]
    sent = await wired.client.post(f"/api/v1/notifications/{failed[0]['id']}/retry")
    assert sent.status_code == 200 and sent.json()["status"] == "pending"
    again = await wired.client.post(f"/api/v1/notifications/{failed[0]['id']}/retry")
    assert again.status_code == 409
    assert (await wired.client.post("/api/v1/notifications/99999/retry")).status_code == 404
    await wired.dispatcher.run_once()
    assert len(slack_fake.messages) == 1


async def test_notifications_api_filters_and_alert_detail(wired) -> None:  # type: ignore[no-untyped-def]
    await wired.post_webhook(load_payload("ha-duplicate-peer-a"))
    await wired.dispatcher.run_once()
    items = (await wired.client.get("/api/v1/notifications", params={"channel": "email"})).json()["items"]
    assert [(n["recipient"], n["status"], len(n["alert_ids"])) for n in items] == [("alice@example.com", "sent", 3)]
    alert_id = items[0]["alert_ids"][0]
    by_alert = (await wired.client.get("/api/v1/notifications", params={"alert_id": alert_id})).json()["items"]
    assert {n["channel"] for n in by_alert} == {"slack", "email"}
    detail = (await wired.client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert {n["channel"] for n in detail["notifications"]} == {"slack", "email"}
    assert items[0]["provider_ref"]["message_id"].startswith("<")


async def test_hostile_label_values_are_escaped(wired, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    alert = make_alert("ModelDrift", model="fraud-detector", feature="<!channel> <https://evil.example|click>")
    alert["annotations"]["summary"] = "bad\r\nBcc: victim@example.com"
    alert["annotations"]["description"] = "<script>alert(1)</script> & <@U123>"
    await wired.post_webhook(make_payload([alert]))
    await wired.dispatcher.run_once()
    blocks_text = str(slack_fake.messages[0].blocks)
    assert "<!channel>" not in blocks_text and "&lt;!channel&gt;" in blocks_text
    assert "<https://evil.example|click>" not in blocks_text
    assert "<@U123>" not in blocks_text
    mail = smtp_server.received[0]
    html = mail.message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert mail.rcpt_tos == ["alice@example.com"] and mail.message["Bcc"] is None
    assert "\n" not in mail.message["Subject"]


async def test_unconfigured_channels_go_to_the_log(make_settings, start_app, caplog) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(models=[{"name": "fraud-detector", "owner": "alice@example.com"}])
    async with start_app(settings) as h:
        await h.post_webhook(load_payload("ha-duplicate-peer-a"))
        with caplog.at_level("INFO", logger="receiver.notifiers.log"):
            assert await dispatcher_for(h).run_once() == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "receiver.notifiers.log"]
    assert len(logged) == 2 and all("alice@example.com" in line for line in logged)


def _as_dt(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_concurrent_deliveries_share_commits_and_each_is_recorded_once(
    make_settings, start_app, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    """Sent rows of deliveries that finish together are committed together (SentRecorder): they share sent_at."""
    recipients = [f"user{i}@example.com" for i in range(24)]
    route = [{"matchers": [], "email": recipients}]
    settings = make_settings(
        smtp={"host": smtp_server.host, "port": smtp_server.port, "sender": "alerts@example.com", "timeout": 5},
        dispatch={"enabled": False, "concurrency": 8},
        routes=route,
    )
    async with start_app(settings) as h:
        assert (await h.post_webhook(make_payload([make_alert(model="m")]))).json()["notifications"] == 24
        dispatcher = dispatcher_for(h)
        try:
            assert await dispatcher.run_once() == 24
        finally:
            await dispatcher.stop()
        rows = await notification_rows(h)
    assert [r["status"] for r in rows] == ["sent"] * 24
    assert sorted(m.rcpt_tos[0] for m in smtp_server.received) == sorted(recipients)  # each once
    assert len({r["sent_at"] for r in rows}) < 24  # eight sends in flight: some committed together
