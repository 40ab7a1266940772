"""POST /webhook in-process on SQLite and PostgreSQL: storage, dedup, bad input, auth, 503."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.support import load_payload, make_alert, make_payload


async def _counts(h) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {t: await h.scalar(f"SELECT count(*) FROM {t}") for t in ("receipts", "alerts", "events", "alert_labels")}


async def test_firing_payload_is_stored_with_events(harness) -> None:  # type: ignore[no-untyped-def]
    r = await harness.post_webhook(load_payload("ha-duplicate-peer-a"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["duplicate"] is False and body["alerts"] == 3 and body["events"] == {"firing": 3}
    assert await _counts(harness) == {"receipts": 1, "alerts": 3, "events": 3, "alert_labels": 18}


async def test_ha_duplicate_is_recorded_but_changes_nothing(harness) -> None:  # type: ignore[no-untyped-def]
    first = await harness.post_webhook(load_payload("ha-duplicate-peer-a"))
    second = await harness.post_webhook(load_payload("ha-duplicate-peer-b"))
    assert first.json()["duplicate"] is False
    assert second.json() | {"receipt_id": 0} == {
        "receipt_id": 0,
        "duplicate": True,
        "alerts": 3,
        "events": {},
        "notifications": 0,
    }
    assert await _counts(harness) == {"receipts": 2, "alerts": 3, "events": 3, "alert_labels": 18}


async def test_concurrent_identical_webhooks_store_once(harness) -> None:  # type: ignore[no-untyped-def]
    # Unpeered HA Alertmanagers send the same group 1–4 ms apart.
    payloads = [load_payload("ha-duplicate-peer-a"), load_payload("ha-duplicate-peer-b")] * 5
    answers = await asyncio.gather(*(harness.post_webhook(p) for p in payloads))
    assert [a.status_code for a in answers] == [200] * 10
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert await harness.scalar("SELECT count(*) FROM events") == 3


async def test_partial_duplicate_yields_events_only_for_what_is_new(harness) -> None:  # type: ignore[no-untyped-def]
    alerts = [make_alert(model=m) for m in ("a", "b", "c")]
    await harness.post_webhook(make_payload(alerts[:2]))
    r = await harness.post_webhook(make_payload(alerts))  # a peer that saw one more alert
    assert r.json()["duplicate"] is False
    assert r.json()["events"] == {"firing": 1}
    assert await harness.scalar("SELECT count(*) FROM alerts") == 3


async def test_one_resolved_in_a_group_resolves_only_that_alert(harness) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("ha-duplicate-peer-a"))
    r = await harness.post_webhook(load_payload("drift-one-resolved"))
    assert r.json()["events"] == {"resolved": 1}
    statuses = (
        await harness.scalar("SELECT group_concat(status) FROM (SELECT status FROM alerts ORDER BY status)")
        if harness.state.engine.dialect.name == "sqlite"
        else await harness.scalar("SELECT string_agg(status, ',' ORDER BY status) FROM alerts")
    )
    assert statuses == "firing,firing,resolved"
    resolved = (await harness.client.get("/api/v1/alerts", params={"status": "resolved"})).json()["items"]
    assert len(resolved) == 1
    assert resolved[0]["labels"]["feature"] == "amount"
    assert resolved[0]["ends_at"] == "2026-11-29T16:38:30.617000Z"


async def test_firing_then_resolved_then_late_firing(harness) -> None:  # type: ignore[no-untyped-def]
    firing, resolved = load_payload("service-down-firing"), load_payload("service-down-resolved")
    assert (await harness.post_webhook(firing)).json()["events"] == {"firing": 1}
    assert (await harness.post_webhook(resolved)).json()["events"] == {"resolved": 1}
    # A late peer re-sends the old firing state with a different externalURL: no event.
    late = dict(firing, externalURL="http://peer-b:9093", notification_reason="first notification")
    assert (await harness.post_webhook(late)).json()["events"] == {}
    alert = (await harness.client.get("/api/v1/alerts")).json()["items"][0]
    assert alert["status"] == "resolved"


async def test_repeat_after_window_is_an_event(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    # A zero window: every re-send counts as Alertmanager's repeat_interval reminder.
    async with start_app(make_settings(dedup_window="0s")) as h:
        payload = load_payload("service-down-firing")
        assert (await h.post_webhook(payload)).json()["events"] == {"firing": 1}
        again = await h.post_webhook(payload)
        assert again.json()["duplicate"] is False
        assert again.json()["events"] == {"repeat": 1}


async def test_same_labels_firing_again_later_is_a_new_occurrence(harness) -> None:  # type: ignore[no-untyped-def]
    t0 = datetime(2026, 11, 29, 10, tzinfo=UTC)
    await harness.post_webhook(make_payload([make_alert(starts_at=t0, model="m")]))
    await harness.post_webhook(make_payload([make_alert(starts_at=t0, model="m", status="resolved")]))
    r = await harness.post_webhook(make_payload([make_alert(starts_at=t0 + timedelta(hours=1), model="m")]))
    assert r.json()["events"] == {"firing": 1}
    assert await harness.scalar("SELECT count(DISTINCT fingerprint) FROM alerts") == 1
    assert await harness.scalar("SELECT count(*) FROM alerts") == 2


async def test_unicode_crd_payload_round_trips(harness) -> None:  # type: ignore[no-untyped-def]
    payload = load_payload("crd-unicode-nanoseconds")
    assert (await harness.post_webhook(payload)).status_code == 200
    alert = (await harness.client.get("/api/v1/alerts", params={"receiver": payload["receiver"]})).json()["items"][0]
    assert alert["labels"]["model"] == "recommandé-ünïcode"
    assert alert["labels"]["summary_hint"] == "p99 ≥ 2s 🚨"
    assert alert["starts_at"] == "2026-11-29T16:40:01.123456Z"
    assert alert["ends_at"] is None


BAD_BODIES = [
    (b"", 400, "invalid_json", None),
    (b"{not json", 400, "invalid_json", None),
    (b"\xff\xfe\x00garbage", 400, "invalid_json", None),
    (b"[]", 422, "invalid_payload", None),
    (b'{"version": "4"}', 422, "invalid_payload", "receiver"),
    (json.dumps(dict(load_payload("service-down-firing"), version="5")).encode(), 422, "invalid_payload", "version"),
    (json.dumps(dict(load_payload("service-down-firing"), alerts=[])).encode(), 422, "invalid_payload", "alerts"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", None),
]


@pytest.mark.parametrize(("body", "status", "code", "loc"), BAD_BODIES)
async def test_bad_input_gets_a_clear_4xx_and_stores_nothing(harness, body, status, code, loc) -> None:  # type: ignore[no-untyped-def]
    r = await harness.client.post("/webhook", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    if loc:
        assert loc in [d["loc"] for d in error["details"]]
    assert await _counts(harness) == {"receipts": 0, "alerts": 0, "events": 0, "alert_labels": 0}


@pytest.mark.parametrize(
    ("path", "value", "loc"),
    [
        (("labels", "severity"), 3, "alerts[0].labels.severity"),
        (("startsAt",), "yesterday", "alerts[0].startsAt"),
        (("status",), "pending", "alerts[0].status"),
        (("labels",), {}, "alerts[0].labels"),
    ],
)
async def test_wrong_field_types_name_the_field(harness, path, value, loc) -> None:  # type: ignore[no-untyped-def]
    payload = load_payload("service-down-firing")
    target = payload["alerts"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    r = await harness.post_webhook(payload)
    assert r.status_code == 422
    assert loc in [d["loc"] for d in r.json()["error"]["details"]]
    assert await harness.scalar("SELECT count(*) FROM receipts") == 0


async def test_body_over_limit_is_413(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(max_body_bytes=2048)) as h:
        big = make_payload([make_alert(model=f"m{i}") for i in range(40)])
        r = await h.post_webhook(big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert (await h.post_webhook(load_payload("service-down-firing"))).status_code == 200
        assert await h.scalar("SELECT count(*) FROM alerts") == 1


async def test_token_is_required_when_configured(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    token = "s3cret-webhook-token"
    async with start_app(make_settings(webhook_token=token)) as h:
        payload = load_payload("service-down-firing")
        assert (await h.post_webhook(payload)).status_code == 401
        assert (await h.post_webhook(payload, headers={"Authorization": "Bearer wrong"})).status_code == 401
        refused = await h.post_webhook(payload, headers={"Authorization": "Basic !!notbase64"})
        assert refused.status_code == 401 and token not in refused.text
        assert await h.scalar("SELECT count(*) FROM receipts") == 0
        ok = await h.post_webhook(payload, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        basic = base64.b64encode(f"alertmanager:{token}".encode()).decode()
        ok2 = await h.post_webhook(payload, headers={"Authorization": f"Basic {basic}"})
        assert ok2.status_code == 200 and ok2.json()["duplicate"] is True


async def test_storage_failure_is_503_then_recovers(harness) -> None:  # type: ignore[no-untyped-def]
    # Break the real database under the running app (the table disappears), then mend it.
    async with harness.state.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE alert_labels RENAME TO alert_labels_away"))
    r = await harness.post_webhook(load_payload("service-down-firing"))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "storage_unavailable"
    async with harness.state.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE alert_labels_away RENAME TO alert_labels"))
    assert await harness.scalar("SELECT count(*) FROM receipts") == 0  # nothing half-stored
    again = await harness.post_webhook(load_payload("service-down-firing"))
    assert again.status_code == 200 and again.json()["events"] == {"firing": 1}
