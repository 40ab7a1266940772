"""The dispatcher: claims due notifications, renders, sends, records; retries with backoff.

Policy:
- a temporary failure is retried with exponential backoff and jitter, never sooner than the
  provider's Retry-After, until `give_up_after` from the notification's creation; then it is failed;
- a permanent failure fails at once with its reason;
- messages to one recipient are sent in order, and Slack messages to one DM at most once per
  `slack_channel_interval` (Slack's ~1 message/s per channel), without holding up other recipients.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from receiver.config import DispatchSettings, Settings
from receiver.metrics import Metrics
from receiver.notifiers import build_notifiers
from receiver.notifiers.base import DeliveryError, Message, Notifier, SendResult
from receiver.render import Renderer, RenderInput
from receiver.store import outbox
from receiver.store.directory import DbSlackDirectory

log = logging.getLogger(__name__)


def next_attempt(
    attempts: int, error: DeliveryError, policy: DispatchSettings, *, now: datetime, rng: random.Random
) -> datetime:
    """When to try again: exponential backoff with ±20 % jitter, at least the provider's Retry-After."""
    backoff = policy.backoff_initial.total_seconds() * (2 ** max(attempts - 1, 0))
    delay = min(backoff, policy.backoff_max.total_seconds()) * rng.uniform(0.8, 1.2)
    if error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return now + timedelta(seconds=delay)


def gives_up(created_at: datetime, retry_at: datetime, policy: DispatchSettings) -> bool:
    """True when the next try would fall past the give-up age."""
    return retry_at - created_at >= policy.give_up_after


class SentRecorder:
    """Marks notifications sent, those of deliveries that finish together in one transaction.

    A delivery waits until its row is committed, as when each had its own transaction; but with
    `concurrency` sends in flight, one commit per message was most of the dispatcher's database time
    (1.5 commits and 11 SQLite thread hops per notification). While one batch commits, the next
    gathers. A failed commit fails every delivery in it: their rows stay claimed and are sent again
    when the lease runs out, as before.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: list[tuple[int, dict[str, str], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, notification_id: int, provider_ref: dict[str, str]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((notification_id, provider_ref, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="dispatcher-sent-records")
        await done

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self.engine.begin() as conn:
                    await outbox.mark_sent_many(conn, [(nid, ref) for nid, ref, _ in batch], now=datetime.now(UTC))
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)


class Dispatcher:
    """Runs inside `serve` (or alone with `alert-receiver dispatch`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        notifiers: dict[str, Notifier],
        *,
        metrics: Metrics | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.policy = settings.dispatch
        self.notifiers = notifiers
        self.metrics = metrics or Metrics()
        self.renderer = renderer or Renderer(settings.templates_dir)
        self.wake = asyncio.Event()
        self._rng = random.Random()
        self._last_slack_send: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._sent = SentRecorder(engine)

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings, metrics: Metrics | None = None) -> Dispatcher:
        return cls(engine, settings, build_notifiers(settings, DbSlackDirectory(engine)), metrics=metrics)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let in-flight sends finish within `grace`; the rest stays pending."""
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        for notifier in {id(n): n for n in self.notifiers.values()}.values():
            await notifier.aclose()

    async def run(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_once()
            except Exception:  # the database may be briefly away; keep the loop alive
                log.exception("dispatch round failed")
                claimed = 0
            if claimed == 0 and not self._stopping:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.policy.poll_interval.total_seconds())
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Claim one batch and send it; returns how many notifications were claimed."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            rows = await outbox.claim_due(conn, now=now, limit=self.policy.batch_size, lease=self.policy.lease)
        if not rows:
            return 0
        async with self.engine.connect() as conn:  # one query for the batch, not one per message
            covered = await outbox.covered_alerts_of(conn, [row["id"] for row in rows])
        for row in rows:
            row["covered"] = covered[row["id"]]
        by_recipient: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_recipient[(row["channel"], row["recipient"])].append(row)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def deliver_in_order(batch: list[dict[str, Any]]) -> None:
            async with gate:
                for row in batch:
                    await self.deliver(row)

        await asyncio.gather(*(deliver_in_order(batch) for batch in by_recipient.values()))
        return len(rows)

    async def deliver(self, row: dict[str, Any]) -> None:
        """Render, send and record one claimed notification."""
        notifier = self.notifiers.get(row["channel"], self.notifiers["log"])
        try:
            message = await self._message_for(row)
        except Exception as exc:  # a template error: retrying will not fix it
            log.exception("rendering notification %s failed", row["id"], extra={"notification_id": row["id"]})
            await self._record_failure(row, DeliveryError("render_error", type(exc).__name__))
            return
        await self._pace(row, notifier)
        started = time.perf_counter()
        try:
            result = await notifier.send(message)
        except DeliveryError as exc:
            self.metrics.send_latency.labels(row["channel"]).observe(time.perf_counter() - started)
            await self._record_failure(row, exc)
            return
        self.metrics.send_latency.labels(row["channel"]).observe(time.perf_counter() - started)
        await self._record_sent(row, result)

    async def _message_for(self, row: dict[str, Any]) -> Message:
        covered, parent, parent_alerts = row["covered"], None, []  # covered: fetched with the batch (run_once)
        if row["kind"] in ("resolved", "repeat"):
            async with self.engine.connect() as conn:
                parent = await outbox.thread_parent(conn, row)
                parent_alerts = await outbox.covered_alerts(conn, parent["id"]) if parent else []
        history = f"{self.settings.external_url.rstrip('/')}/" if self.settings.external_url else None
        data = RenderInput(row["kind"], row["group_key"], covered, history)
        original = None
        if parent and row["kind"] == "resolved":
            # Show the firing message as it stands now: its alerts with their current status.
            now_states = [dict(a, event=a["status"]) for a in parent_alerts]
            original = RenderInput(
                "resolved" if all(a["status"] == "resolved" for a in now_states) else "firing",
                row["group_key"],
                now_states,
                history,
            )
        thread = parent["provider_ref"] if parent else None
        return self.renderer.render(row["channel"], row["recipient"], data, thread=thread, original=original)

    async def _pace(self, row: dict[str, Any], notifier: Notifier) -> None:
        if notifier.channel != "slack":
            return
        gap = self.policy.slack_channel_interval.total_seconds()
        last = self._last_slack_send.get(row["recipient"])
        if last is not None and (wait := last + gap - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        self._last_slack_send[row["recipient"]] = time.monotonic()

    async def _record_sent(self, row: dict[str, Any], result: SendResult) -> None:
        await self._sent.record(row["id"], result.provider_ref)
        self.metrics.notifications.labels(row["channel"], "sent", "").inc()
        log.info("notification %s sent via %s", row["id"], row["channel"], extra={"notification_id": row["id"]})

    async def _record_failure(self, row: dict[str, Any], exc: DeliveryError) -> None:
        now = datetime.now(UTC)
        error = exc.detail or exc.reason
        async with self.engine.begin() as conn:
            retry_at = (
                next_attempt(row["attempts"], exc, self.policy, now=now, rng=self._rng) if exc.retryable else None
            )
            if retry_at is not None and not gives_up(row["created_at"], retry_at, self.policy):
                await outbox.mark_retry(conn, row["id"], next_attempt_at=retry_at, reason=exc.reason, error=error)
                result = "retry"
            else:
                reason = exc.reason if not exc.retryable else f"gave_up:{exc.reason}"
                await outbox.mark_failed(conn, row["id"], reason=reason, error=error)
                result = "failed"
        self.metrics.notifications.labels(row["channel"], result, exc.reason).inc()
        log.warning(
            "notification %s %s: %s",
            row["id"],
            result,
            exc.reason,
            extra={"notification_id": row["id"], "reason": exc.reason},
        )
