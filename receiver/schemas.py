"""The Alertmanager webhook payload (version 4) and the history API's response models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")

# Firing alerts carry Go's zero time as endsAt; it means "no end yet".
_GO_ZERO_YEAR = 1
FINGERPRINT_LENGTH = 16  # Alertmanager's fingerprints: 16 hex digits
MAX_INT32 = 2**31 - 1


def alert_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over sorted label names and values, each followed by 0xFF."""
    h = 0xCBF29CE484222325
    for name in sorted(labels, key=lambda n: n.encode()):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h ^= byte
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("time is out of range once converted to UTC (years 1 to 9999)") from None


class WebhookAlert(BaseModel):
    """One alert inside a webhook payload."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("starts_at")
    @classmethod
    def _starts_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("ends_at")
    @classmethod
    def _ends_utc(cls, value: datetime | None) -> datetime | None:
        if value is None or value.year <= _GO_ZERO_YEAR:
            return None
        return _utc(value)

    @field_validator("labels")
    @classmethod
    def _has_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("an alert needs at least one label")
        return value

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> WebhookAlert:
        # Senders other than Alertmanager may omit it, or send something longer than Alertmanager's
        # 16 hex digits (which is all the column holds): compute it the way Alertmanager does. The
        # same labels always give the same fingerprint, so dedup works the same for such senders.
        if not self.fingerprint or len(self.fingerprint) > FINGERPRINT_LENGTH:
            self.fingerprint = alert_fingerprint(self.labels)
        return self

    @property
    def key(self) -> tuple[str, datetime]:
        """The identity of one occurrence of an alert."""
        return (self.fingerprint, self.starts_at)


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4 (fields added after 0.25 are optional)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert] = Field(min_length=1)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0, le=MAX_INT32)
    notification_reason: str | None = None
    route_labels: dict[str, str] | None = Field(default=None, alias="routeLabels")


class EventOut(BaseModel):
    kind: str
    at: datetime
    receipt_id: int | None


class ReceiptOut(BaseModel):
    id: int
    received_at: datetime
    receiver: str
    group_key: str
    status: str
    digest: str
    duplicate: bool
    alert_count: int
    truncated_alerts: int
    notification_reason: str | None
    external_url: str


class NotificationOut(BaseModel):
    id: int
    channel: str
    recipient: str
    kind: str
    group_key: str
    receipt_id: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    reason: str | None
    provider_ref: dict[str, Any] | None
    created_at: datetime
    sent_at: datetime | None
    alert_ids: list[int] = Field(default_factory=list)


class AlertOut(BaseModel):
    id: int
    fingerprint: str
    status: str
    alertname: str | None
    severity: str | None
    receiver: str
    group_key: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    model: dict[str, Any] | None = None
    links: dict[str, str] = Field(default_factory=dict)


class AlertDetail(AlertOut):
    events: list[EventOut]
    receipts: list[ReceiptOut]
    notifications: list[NotificationOut] = Field(default_factory=list)


class Page(BaseModel, Generic[T]):
    """A page of results; pass `next_cursor` back as `cursor` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class WebhookResult(BaseModel):
    """What POST /webhook answers once the receipt is committed."""

    receipt_id: int
    duplicate: bool
    alerts: int
    events: dict[str, int]
    notifications: int = 0
