"""Metrics, JSON logs with receipt and notification ids, and retention."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from receiver.logs import JsonFormatter
from receiver.store import migrate
from receiver.store.engine import create_engine
from receiver.store.retention import _DELETE_LABELS_SQLITE, prune
from receiver.store.tables import alerts, receipts
from tests.delivery import dispatcher_for
from tests.support import load_payload, make_alert, make_payload


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_count_what_happened(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(models=[{"name": "fraud-detector", "owner": "alice@example.com"}])
    async with start_app(settings) as h:
        await h.post_webhook(load_payload("ha-duplicate-peer-a"))
        await h.post_webhook(load_payload("ha-duplicate-peer-b"))
        await h.post_webhook(make_payload([make_alert(model="not-in-catalog")]))
        await h.client.post("/webhook", content=b"{bad")
        before = _samples((await h.client.get("/metrics")).text)
        await dispatcher_for(h).run_once()
        after = _samples((await h.client.get("/metrics")).text)
    assert before[("receiver_webhooks_total", (("outcome", "stored"),))] == 2
    assert before[("receiver_webhooks_total", (("outcome", "duplicate"),))] == 1
    assert before[("receiver_webhooks_total", (("outcome", "400"),))] == 1
    assert before[("receiver_duplicate_receipts_total", ())] == 1
    assert before[("receiver_alert_events_total", (("kind", "firing"),))] == 4
    assert before[("receiver_catalog_misses_total", ())] == 1
    assert before[("receiver_writer_restarts_total", ())] == 0
    assert before[("receiver_outbox_pending", ())] == 3  # alice on slack+email, the unrouted alert on log
    assert before[("receiver_webhook_duration_seconds_count", ())] == 4
    assert after[("receiver_outbox_pending", ())] == 0
    sent = {k: v for k, v in after.items() if k[0] == "receiver_notifications_total"}
    assert sum(sent.values()) == 3


async def test_json_logs_carry_receipt_and_notification_ids(harness, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO):
        receipt_id = (await harness.post_webhook(load_payload("service-down-firing"))).json()["receipt_id"]
        await dispatcher_for(harness).run_once()
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert any(line.get("receipt_id") == receipt_id and "stored" in line["msg"] for line in lines)
    assert any("notification_id" in line and "sent" in line["msg"] for line in lines)


async def test_retention_deletes_the_label_rows_of_pruned_alerts_only(harness) -> None:  # type: ignore[no-untyped-def]
    """Label rows have no foreign key: prune finds them by the keys in each pruned alert's labels, odd
    characters and empty values included, and leaves those of every other alert."""
    odd = make_alert("Old", model="m", note='quote " back\\slash ünï 🚨', empty="", path="a.b[0]")
    kept = make_alert("Kept", model="m", note='quote " back\\slash ünï 🚨')
    await harness.post_webhook(make_payload([odd, kept]))
    month_ago = datetime.now(UTC) - timedelta(days=30)
    async with harness.state.engine.begin() as conn:
        await conn.execute(update(alerts).where(alerts.c.alertname == "Old").values(last_seen_at=month_ago))
    gone = await prune(
        harness.state.engine, now=datetime.now(UTC), retention=timedelta(days=7), dedup_window=timedelta(minutes=10)
    )
    assert gone.alerts == 1
    (kept_id,) = [a["id"] for a in (await harness.client.get("/api/v1/alerts")).json()["items"]]
    rows = await harness.scalar("SELECT count(*) FROM alert_labels")
    assert (
        rows
        == len(kept["labels"])
        == await harness.scalar(f"SELECT count(*) FROM alert_labels WHERE alert_id = {kept_id}")
    )


async def _count_by_alert(harness, table: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    async with harness.state.engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT alert_id, count(*) FROM {table} GROUP BY alert_id"))
        return {alert_id: count for alert_id, count in rows}


async def test_retention_deletes_what_refers_to_pruned_alerts_and_receipts(harness) -> None:  # type: ignore[no-untyped-def]
    """Events and links have no foreign keys: pruning an alert deletes its events and its receipt and
    notification links, not those of the other alert of the same receipt; pruning the receipt deletes
    its links and notifications; the kept alert's event then shows no receipt."""
    answer = await harness.post_webhook(make_payload([make_alert("Old"), make_alert("Kept")]))
    receipt_id = answer.json()["receipt_id"]
    ids = {a["labels"]["alertname"]: a["id"] for a in (await harness.client.get("/api/v1/alerts")).json()["items"]}
    month_ago = datetime.now(UTC) - timedelta(days=30)
    async with harness.state.engine.begin() as conn:
        await conn.execute(update(alerts).where(alerts.c.id == ids["Old"]).values(last_seen_at=month_ago))
    policy = {"retention": timedelta(days=7), "dedup_window": timedelta(minutes=10)}
    gone = await prune(harness.state.engine, now=datetime.now(UTC), **policy)
    assert (gone.alerts, gone.receipts) == (1, 0)
    kept = {ids["Kept"]: 1}
    for table in ("events", "receipt_alerts", "notification_alerts"):
        assert await _count_by_alert(harness, table) == kept, table
    assert await harness.scalar("SELECT count(*) FROM notifications") == 1

    await dispatcher_for(harness).run_once()  # nothing pending holds the receipt back
    async with harness.state.engine.begin() as conn:
        await conn.execute(update(receipts).where(receipts.c.id == receipt_id).values(received_at=month_ago))
    gone = await prune(harness.state.engine, now=datetime.now(UTC), **policy)
    assert (gone.alerts, gone.receipts) == (0, 1)
    for table in ("receipt_alerts", "notifications", "notification_alerts"):
        assert await harness.scalar(f"SELECT count(*) FROM {table}") == 0, table
    detail = (await harness.client.get(f"/api/v1/alerts/{ids['Kept']}")).json()
    assert [(e["kind"], e["receipt_id"]) for e in detail["events"]] == [("firing", None)]
    assert await harness.scalar("SELECT receipt_id FROM events") == receipt_id  # kept; readers join receipts


async def test_retention_prunes_old_history_only(harness) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("service-down-firing"))
    await harness.post_webhook(load_payload("ha-duplicate-peer-a"))
    await dispatcher_for(harness).run_once()  # nothing pending holds the receipts back
    engine = harness.state.engine
    later = datetime.now(UTC) + timedelta(days=91)
    kept = await prune(engine, now=datetime.now(UTC), retention=timedelta(days=90), dedup_window=timedelta(minutes=10))
    assert (kept.alerts, kept.receipts) == (0, 0)
    gone = await prune(engine, now=later, retention=timedelta(days=90), dedup_window=timedelta(minutes=10))
    assert (gone.alerts, gone.receipts, gone.claims) == (4, 2, 2)
    for table in ("alerts", "alert_labels", "events", "receipt_alerts", "notifications", "notification_alerts"):
        assert await harness.scalar(f"SELECT count(*) FROM {table}") == 0, table
    # The same payload is new again after its claim expired.
    assert (await harness.post_webhook(load_payload("service-down-firing"))).json()["duplicate"] is False


async def test_retention_deletes_sqlite_label_rows_by_their_whole_key(sqlite_url: str) -> None:
    """Each pruned label row is found by (name, value, alert_id): seeking (name, value) alone would read
    every alert that has the label (`job="x"` on all of them), in every batch."""
    engine = create_engine(sqlite_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            sql = str(_DELETE_LABELS_SQLITE).replace(":alerts", "?")
            plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (json.dumps([[1, {"job": "x"}]]),))
            details = [row[3] for row in plan]
        assert "SEARCH alert_labels USING PRIMARY KEY (name=? AND value=? AND alert_id=?)" in details, details
    finally:
        await engine.dispose()
