"""Prometheus metrics, in a registry of their own per app so tests can build many apps."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from receiver.schemas import WebhookPayload
from receiver.store.ingest import IngestOutcome


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("receiver_webhooks_total", "Webhook requests by outcome", ["outcome"], registry=r)
        self.alerts = Counter("receiver_alerts_ingested_total", "Alerts in accepted webhooks", registry=r)
        self.events = Counter("receiver_alert_events_total", "Alert state changes recorded", ["kind"], registry=r)
        self.duplicates = Counter("receiver_duplicate_receipts_total", "Webhooks recognised as duplicates", registry=r)
        self.webhook_latency = Histogram(
            "receiver_webhook_duration_seconds",
            "Time to answer POST /webhook",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.notifications = Counter(
            "receiver_notifications_total",
            "Notification attempts by channel, result and reason",
            ["channel", "result", "reason"],
            registry=r,
        )
        self.send_latency = Histogram(
            "receiver_notification_send_duration_seconds", "Time per send attempt", ["channel"], registry=r
        )
        self.catalog_misses = Gauge(
            "receiver_catalog_misses_total", "Alerts whose model label is not in the catalog", registry=r
        )
        self.writer_restarts = Gauge(
            "receiver_writer_restarts_total", "Times the writer process died and was started again", registry=r
        )
        self.writer_stalls = Gauge(
            "receiver_writer_stalls_total",
            "Times the writer process was killed for answering nothing while receipts waited",
            registry=r,
        )
        self.outbox_depth = Gauge("receiver_outbox_pending", "Notifications waiting to be sent", registry=r)
        self.outbox_oldest = Gauge(
            "receiver_outbox_oldest_pending_seconds", "Age of the oldest pending notification", registry=r
        )

    def record_ingest(self, payload: WebhookPayload, outcome: IngestOutcome) -> None:
        self.webhooks.labels("duplicate" if outcome.duplicate else "stored").inc()
        self.alerts.inc(len(payload.alerts))
        if outcome.duplicate:
            self.duplicates.inc()
        for kind, count in outcome.events.items():
            self.events.labels(kind).inc(count)

    def record_rejected(self, code: str) -> None:
        self.webhooks.labels(code).inc()

    async def render(self, state: Any) -> tuple[bytes, str]:
        """Refresh the gauges that are read from state, then serialise."""
        self.catalog_misses.set(state.preparer.catalog_misses)
        self.writer_restarts.set(state.writer.restarts)
        self.writer_stalls.set(state.writer.stalls)
        await state.refresh_outbox_gauges()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
