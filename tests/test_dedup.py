"""The dedup decisions, as tables, plus properties of the receipt digest."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.dedup import AlertState, EventKind, decide_alert_event, receipt_digest
from receiver.schemas import WebhookPayload
from tests.support import load_payload, make_alert, make_payload

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("current", "incoming", "event", "reason"),
    [
        (None, "firing", EventKind.FIRING, "new_firing"),
        (None, "resolved", EventKind.RESOLVED, "first_seen_resolved"),
        (AlertState("firing", NOW - timedelta(seconds=1)), "firing", None, "unchanged_within_window"),
        (AlertState("firing", NOW - WINDOW + timedelta(seconds=1)), "firing", None, "unchanged_within_window"),
        (AlertState("firing", NOW - WINDOW), "firing", EventKind.REPEAT, "repeat_after_window"),
        (AlertState("firing", NOW - timedelta(hours=4)), "firing", EventKind.REPEAT, "repeat_after_window"),
        (AlertState("firing", NOW - timedelta(seconds=1)), "resolved", EventKind.RESOLVED, "resolved"),
        (AlertState("firing", NOW - timedelta(hours=5)), "resolved", EventKind.RESOLVED, "resolved"),
        (AlertState("resolved", NOW - timedelta(seconds=1)), "resolved", None, "already_resolved"),
        (AlertState("resolved", NOW - timedelta(hours=5)), "resolved", None, "already_resolved"),
        (AlertState("resolved", NOW - timedelta(seconds=1)), "firing", None, "stale_firing_after_resolved"),
    ],
)
def test_decide_alert_event(current: AlertState | None, incoming: str, event: EventKind | None, reason: str) -> None:
    decision = decide_alert_event(current, incoming, now=NOW, window=WINDOW)
    assert (decision.event, decision.reason) == (event, reason)


def _payload(name: str) -> WebhookPayload:
    return WebhookPayload.model_validate(load_payload(name))


def test_ha_peers_have_the_same_digest() -> None:
    # The captured pair differs only in externalURL.
    assert receipt_digest(_payload("ha-duplicate-peer-a")) == receipt_digest(_payload("ha-duplicate-peer-b"))


def test_state_changes_change_the_digest() -> None:
    firing, one_resolved = _payload("ha-duplicate-peer-a"), _payload("drift-one-resolved")
    assert receipt_digest(firing) != receipt_digest(one_resolved)
    assert receipt_digest(_payload("service-down-firing")) != receipt_digest(_payload("service-down-resolved"))


def test_digest_ignores_annotations_order_and_reason() -> None:
    raw = load_payload("ha-duplicate-peer-a")
    changed = dict(raw, notification_reason="repeat interval elapsed", alerts=list(reversed(raw["alerts"])))
    changed["alerts"][0] = dict(changed["alerts"][0], annotations={"summary": "edited"})
    assert receipt_digest(WebhookPayload.model_validate(raw)) == receipt_digest(WebhookPayload.model_validate(changed))


def test_digest_depends_on_receiver_and_group() -> None:
    raw = load_payload("service-down-firing")
    base = receipt_digest(WebhookPayload.model_validate(raw))
    assert receipt_digest(WebhookPayload.model_validate(dict(raw, receiver="other"))) != base
    assert receipt_digest(WebhookPayload.model_validate(dict(raw, groupKey="{}:{}"))) != base


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True), st.randoms())
def test_digest_is_independent_of_alert_order(models: list[str], rnd: random.Random) -> None:
    alerts = [make_alert(model=m) for m in models]
    shuffled = alerts[:]
    rnd.shuffle(shuffled)
    a = WebhookPayload.model_validate(make_payload(alerts))
    b = WebhookPayload.model_validate(make_payload(shuffled))
    assert receipt_digest(a) == receipt_digest(b)
