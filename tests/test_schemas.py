"""Parsing Alertmanager's payload: fingerprints, timestamps, quirks of the real sender."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from receiver.schemas import WebhookPayload, alert_fingerprint
from tests.support import load_payload

SAMPLES = ["service-down-firing", "service-down-resolved", "ha-duplicate-peer-a", "drift-one-resolved"]


@pytest.mark.parametrize("name", SAMPLES)
def test_fingerprint_matches_alertmanager(name: str) -> None:
    for alert in load_payload(name)["alerts"]:
        assert alert_fingerprint(alert["labels"]) == alert["fingerprint"]


def test_missing_fingerprint_is_computed() -> None:
    payload = WebhookPayload.model_validate(load_payload("crd-unicode-nanoseconds"))
    alert = payload.alerts[0]
    assert alert.fingerprint == alert_fingerprint(alert.labels)
    assert len(alert.fingerprint) == 16


def test_go_zero_end_time_means_no_end_and_nanoseconds_parse() -> None:
    payload = WebhookPayload.model_validate(load_payload("crd-unicode-nanoseconds"))
    alert = payload.alerts[0]
    assert alert.ends_at is None
    assert alert.starts_at == datetime(2026, 11, 29, 16, 40, 1, 123456, tzinfo=UTC)
    assert payload.receiver == "ml-serving/ml\\.alerts/alert-receiver"


def test_resolved_alert_keeps_its_end() -> None:
    payload = WebhookPayload.model_validate(load_payload("service-down-resolved"))
    assert payload.alerts[0].ends_at is not None and payload.alerts[0].status == "resolved"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"version": "5"}, ("version",)),
        ({"alerts": []}, ("alerts",)),
        ({"status": "pending"}, ("status",)),
        ({"groupKey": None}, ("groupKey",)),
    ],
)
def test_invalid_payload_names_the_field(change: dict, loc: tuple) -> None:
    raw = dict(load_payload("service-down-firing"), **change)
    with pytest.raises(ValidationError) as info:
        WebhookPayload.model_validate(raw)
    assert loc in [tuple(e["loc"]) for e in info.value.errors()]
