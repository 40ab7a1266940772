"""Deciding what is new. Pure functions; the store enforces the same decisions with constraints.

Two levels (protocols.md §4–5):
- receipt: HA peers and Alertmanager's retries send the same group state more than once. A digest
  over what identifies that state, seen again within the dedup window, marks the receipt a duplicate.
- alert: one occurrence is keyed by (fingerprint, startsAt). An event is recorded only when its state
  changes, or as a `repeat` when Alertmanager re-sends a still-firing alert after the window.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from receiver.schemas import WebhookPayload


class EventKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"
    REPEAT = "repeat"


@dataclass(frozen=True)
class AlertState:
    """What the store knows about one alert occurrence."""

    status: str  # "firing" | "resolved"
    last_event_at: datetime


@dataclass(frozen=True)
class Decision:
    """The event to record (None: nothing new) and the named reason, for logs and tests."""

    event: EventKind | None
    reason: str


def receipt_digest(payload: WebhookPayload) -> str:
    """Digest of a group's state: receiver, groupKey, status and each alert's identity and status.

    Annotations, externalURL, notification_reason and alert order are left out on purpose: HA peers
    differ in exactly those while describing the same state.
    """
    alerts = sorted(
        (
            a.fingerprint,
            a.starts_at.isoformat(),
            a.ends_at.isoformat() if a.ends_at else "",
            a.status,
        )
        for a in payload.alerts
    )
    material = json.dumps([payload.receiver, payload.group_key, payload.status, alerts], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def decide_alert_event(
    current: AlertState | None, incoming_status: str, *, now: datetime, window: timedelta
) -> Decision:
    """Which event, if any, an incoming alert status makes for an occurrence in state `current`."""
    if current is None:
        if incoming_status == "firing":
            return Decision(EventKind.FIRING, "new_firing")
        # The firing notification never reached us (receiver down, rejected); the person should
        # still learn that something happened and ended.
        return Decision(EventKind.RESOLVED, "first_seen_resolved")
    if current.status == "firing" and incoming_status == "resolved":
        return Decision(EventKind.RESOLVED, "resolved")
    if current.status == "resolved":
        # The same (fingerprint, startsAt) firing after it resolved is a late HA peer or a retry of
        # an older send: a new firing of the alert would carry a new startsAt.
        reason = "already_resolved" if incoming_status == "resolved" else "stale_firing_after_resolved"
        return Decision(None, reason)
    if now - current.last_event_at >= window:
        return Decision(EventKind.REPEAT, "repeat_after_window")
    return Decision(None, "unchanged_within_window")
