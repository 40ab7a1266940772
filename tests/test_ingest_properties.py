"""Properties of ingest over the real store: idempotence and independence from alert order."""

from __future__ import annotations

import asyncio
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from receiver.catalog import ModelCatalog
from receiver.config import Settings
from receiver.ingest import Preparer, ingest_policy
from receiver.schemas import WebhookPayload
from receiver.store import migrate
from receiver.store.engine import create_engine
from receiver.store.ingest import store_batch, store_receipt
from receiver.store.tables import alerts, events
from tests.support import make_alert, make_payload

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
alert_specs = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2), st.sampled_from(["firing", "resolved"])),
    min_size=1,
    max_size=6,
    unique_by=lambda t: (t[0], t[1]),
)


def _payloads(specs: list[tuple[str, int, str]]) -> list[dict]:
    """Two sends of one group: everything firing, then the given statuses."""
    firing = [make_alert(model=m, starts_at=T0 + timedelta(minutes=k)) for m, k, _ in specs]
    later = [make_alert(model=m, starts_at=T0 + timedelta(minutes=k), status=s) for m, k, s in specs]
    return [make_payload(firing), make_payload(later)]


async def _history(raw_payloads: list[dict], *, one_batch: bool = False) -> tuple[list, list]:
    """Ingest payloads (one receipt per transaction, or all in one batch) into a new SQLite file;
    return alert states and events."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'p.db'}", sqlite_synchronous="OFF")
        s = Settings(database_url="sqlite://")
        preparer = Preparer.from_settings(s, ModelCatalog([]))
        try:
            await migrate.upgrade(engine)
            incoming = [preparer.prepare(WebhookPayload.model_validate(raw)) for raw in raw_payloads]
            now, policy = T0 + timedelta(hours=1), ingest_policy(s)
            if one_batch:
                async with engine.begin() as conn:
                    await conn.run_sync(store_batch, incoming, now=now, policy=policy)
            for receipt in [] if one_batch else incoming:
                async with engine.begin() as conn:
                    await conn.run_sync(store_receipt, receipt, now=now, policy=policy)
            async with engine.connect() as conn:
                states = (
                    await conn.execute(
                        select(alerts.c.fingerprint, alerts.c.starts_at, alerts.c.status).order_by(
                            alerts.c.fingerprint, alerts.c.starts_at
                        )
                    )
                ).all()
                kinds = (
                    await conn.execute(
                        select(alerts.c.fingerprint, events.c.kind)
                        .join(events, events.c.alert_id == alerts.c.id)
                        .order_by(alerts.c.fingerprint, events.c.kind)
                    )
                ).all()
        finally:
            await engine.dispose()
    return [tuple(r) for r in states], [tuple(r) for r in kinds]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert_specs)
def test_the_same_payload_twice_equals_once(specs: list[tuple[str, int, str]]) -> None:
    sends = _payloads(specs)
    once = asyncio.run(_history(sends))
    twice = asyncio.run(_history([sends[0], sends[0], sends[1], sends[1]]))
    assert once == twice


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert_specs, st.randoms(use_true_random=False))
def test_alert_order_inside_a_payload_does_not_matter(specs: list[tuple[str, int, str]], rnd: random.Random) -> None:
    sends = _payloads(specs)
    shuffled = [dict(p, alerts=rnd.sample(p["alerts"], len(p["alerts"]))) for p in sends]
    assert asyncio.run(_history(sends)) == asyncio.run(_history(shuffled))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert_specs, st.integers(1, 3))
def test_one_group_commit_equals_one_transaction_per_receipt(specs: list[tuple[str, int, str]], copies: int) -> None:
    # HA copies of each send, all arriving in one group commit, as they do in a storm.
    sends = [p for p in _payloads(specs) for _ in range(copies)]
    assert asyncio.run(_history(sends, one_batch=True)) == asyncio.run(_history(sends))
