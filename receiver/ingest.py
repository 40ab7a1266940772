"""From a validated payload to a committed receipt: enrich and route each alert, then hand to the writer."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from dataclasses import dataclass

from receiver.catalog import ModelCatalog
from receiver.config import Settings
from receiver.dedup import EventKind, receipt_digest
from receiver.enrich import alertmanager_url, model_info, stored_links
from receiver.routing import CompiledRoute, compile_routes, recipients_for
from receiver.schemas import WebhookAlert, WebhookPayload
from receiver.store.ingest import IncomingAlert, IncomingReceipt, IngestOutcome, IngestPolicy
from receiver.writer import BatchWriter
from receiver.writer_process import ProcessWriter


def ingest_policy(settings: Settings) -> IngestPolicy:
    kinds = {EventKind.FIRING, EventKind.RESOLVED}
    if settings.notify_on_repeat:
        kinds.add(EventKind.REPEAT)
    return IngestPolicy(window=settings.dedup_window, notify_kinds=frozenset(kinds))


@dataclass
class Preparer:
    """Derives what is stored with each alert: catalog entry, links and recipients."""

    settings: Settings
    catalog: ModelCatalog
    routes: list[CompiledRoute]
    catalog_misses: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, catalog: ModelCatalog) -> Preparer:
        return cls(settings, catalog, compile_routes(settings.routes))

    def prepare(self, payload: WebhookPayload) -> IncomingReceipt:
        self.catalog.reload_if_changed()
        am_url = alertmanager_url(payload.external_url)
        alerts = [self._prepare_alert(a, am_url) for a in payload.alerts]
        return IncomingReceipt.from_payload(payload, receipt_digest(payload), alerts)

    def _prepare_alert(self, alert: WebhookAlert, am_url: str | None) -> IncomingAlert:
        s = self.settings
        entry = self.catalog.lookup(alert.labels, reload=False)
        if entry is None and alert.labels.get(s.model_label):
            self.catalog_misses += 1
        return IncomingAlert.from_alert(
            alert,
            model=alert.labels.get(s.model_label),
            team=(entry.team if entry else None) or alert.labels.get("team"),
            model_info=model_info(entry, alert.labels, s.model_version_label),
            links=stored_links(alert, entry=entry, grafana=s.grafana, model_label=s.model_label),
            alertmanager_url=am_url,
            recipients=recipients_for(alert.labels, entry, self.routes, s.default_route, s.teams),
        )


@dataclass
class Ingestor:
    preparer: Preparer
    writer: BatchWriter | ProcessWriter

    def enqueue(self, payload: WebhookPayload) -> asyncio.Future[IngestOutcome]:
        """Prepare and queue the payload now; the future is done once it is committed."""
        return self.writer.enqueue(self.preparer.prepare(payload))

    def incoming(self) -> AbstractContextManager[None]:
        """Wrap reading and parsing a request, so the writer can wait for it to join its next commit."""
        return self.writer.incoming()
