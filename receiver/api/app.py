"""The FastAPI application and what it owns: engine, writer, catalog, dispatcher."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.api import health, history, notifications, page, webhook
from receiver.api.errors import install_error_handlers
from receiver.api.webhook import serve_webhook
from receiver.catalog import ModelCatalog
from receiver.config import Settings
from receiver.dispatch import Dispatcher
from receiver.ingest import Ingestor, Preparer, ingest_policy
from receiver.maintenance import retention_loop
from receiver.metrics import Metrics
from receiver.store import migrate, outbox
from receiver.store.engine import create_engine, normalize_url, safe_url
from receiver.writer import BatchWriter, local_writer
from receiver.writer_process import ProcessWriter, WriterConfig

log = logging.getLogger("receiver")


@dataclass
class ReceiverState:
    """Everything the handlers reach through `request.app.state.receiver`."""

    settings: Settings
    engine: AsyncEngine
    catalog: ModelCatalog
    preparer: Preparer
    writer: BatchWriter | ProcessWriter
    ingestor: Ingestor
    metrics: Metrics
    log: logging.Logger = log

    dispatcher: Dispatcher | None = None

    def wake_dispatcher(self) -> None:
        """New work is committed: let the in-process dispatcher look now instead of at its next poll."""
        if self.dispatcher is not None:
            self.dispatcher.wake.set()

    async def refresh_outbox_gauges(self) -> None:
        async with self.engine.connect() as conn:
            depth, oldest = await outbox.pending_stats(conn)
        self.metrics.outbox_depth.set(depth)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest.set(max(age, 0.0))


def build_state(settings: Settings) -> ReceiverState:
    url = normalize_url(settings.database_url)
    # Ingest commits through the writer's own engine (receiver/writer.py) with `sqlite_synchronous`
    # (FULL: an answered webhook survives power loss). This engine serves reads and the outbox
    # bookkeeping, where a commit lost to power loss costs at most a notification sent twice, so it
    # skips the fsync per commit.
    engine = create_engine(url, sqlite_synchronous="NORMAL")
    catalog = ModelCatalog(
        settings.models,
        models_file=settings.models_file,
        model_label=settings.model_label,
        version_label=settings.model_version_label,
    )
    preparer = Preparer.from_settings(settings, catalog)
    policy = ingest_policy(settings)
    writer: BatchWriter | ProcessWriter
    if settings.writer_process:
        stall = settings.writer_stall_timeout.total_seconds()
        writer = ProcessWriter(
            WriterConfig(url, settings.sqlite_synchronous, policy, settings.log_level, settings.log_format, stall)
        )
    else:
        writer, _ = local_writer(url, policy, settings.sqlite_synchronous, engine=engine)
    return ReceiverState(
        settings=settings,
        engine=engine,
        catalog=catalog,
        preparer=preparer,
        writer=writer,
        ingestor=Ingestor(preparer, writer),
        metrics=Metrics(),
    )


class WebhookTimer:
    """ASGI middleware timing POST /webhook and counting its answers by status; it also answers
    POST /webhook itself through `serve_webhook` (the route's handler without FastAPI's routing)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/webhook":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await (serve_webhook if scope["method"] == "POST" else self.app)(scope, receive, capture)
        finally:
            self.metrics.webhook_latency.observe(time.perf_counter() - started)
            if status and status[0] >= 400:
                self.metrics.record_rejected(str(status[0]))


def create_app(settings: Settings, *, run_dispatcher: bool | None = None) -> FastAPI:
    """The receiver as an ASGI app; the lifespan migrates the schema and starts the writer."""
    state = build_state(settings)
    dispatch_on = settings.dispatch.enabled if run_dispatcher is None else run_dispatcher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate.upgrade(state.engine)
        log.info("database ready at %s", safe_url(settings.database_url))
        if settings.webhook_token is None:
            log.warning("RECEIVER_WEBHOOK_TOKEN is not set: anyone who can reach /webhook can post alerts")
        await state.writer.start()
        pruning: asyncio.Task[None] | None = None
        try:  # from here on, whatever fails to start, the writer (maybe a child process) is stopped
            if dispatch_on:
                state.dispatcher = Dispatcher.from_settings(state.engine, settings, state.metrics)
                state.dispatcher.start()
            pruning = asyncio.create_task(retention_loop(state.engine, settings), name="retention")
            yield
        finally:
            if pruning is not None:
                pruning.cancel()
                await asyncio.gather(pruning, return_exceptions=True)
            if state.dispatcher is not None:
                await state.dispatcher.stop()
            await state.writer.stop()
            await state.writer.aclose()
            await state.engine.dispose()

    app = FastAPI(
        title="alert-receiver",
        version="0.1.0",
        description="Alertmanager webhook receiver: dedup, enrichment, alert history, Slack DMs and email.",
        lifespan=lifespan,
    )
    app.state.receiver = state
    install_error_handlers(app)
    app.include_router(webhook.router)
    app.include_router(history.router)
    app.include_router(notifications.router)
    app.include_router(health.router)
    app.include_router(page.router)
    app.add_middleware(WebhookTimer, metrics=state.metrics)
    _add_payload_components(app)
    return app


def _add_payload_components(app: FastAPI) -> None:
    """Publish the webhook payload's nested models under components/schemas, where its $refs point."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(webhook.PAYLOAD_COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
