"""History API: alerts, one alert with its events, receipts, models."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from receiver.api.auth import require_token
from receiver.api.errors import InvalidQuery, NotFound
from receiver.matchers import RegexTooSlow
from receiver.schemas import AlertDetail, AlertOut, NotificationOut, Page, ReceiptOut
from receiver.store import history

# Ids are 64-bit in the database; a larger number is a 422, not a driver overflow.
MAX_ID = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]


def api_auth(request: Request) -> None:
    """History and outbox endpoints need `api_token` when one is configured."""
    token = request.app.state.receiver.settings.api_token
    require_token(request, token.get_secret_value() if token else None)


router = APIRouter(prefix="/api/v1", tags=["history"], dependencies=[Depends(api_auth)])


def encode_cursor(kind: str, last_id: int | None) -> str | None:
    if last_id is None:
        return None
    return base64.urlsafe_b64encode(f"{kind}:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    """The id to continue before; InvalidQuery for a cursor this endpoint did not hand out."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        last_id = int(value)
        if prefix != kind or not 0 < last_id <= MAX_ID:
            raise ValueError
        return last_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery(f"cursor {cursor!r} is not a cursor from this endpoint") from None


def in_utc(name: str, value: datetime | None) -> datetime | None:
    """The query time `name` in UTC, as times are stored; InvalidQuery when that is past year 1…9999."""
    if value is None or value.tzinfo is None:
        return value  # a time without offset is taken as UTC already
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = f"{value.isoformat()} is before year 1 or after year 9999 in UTC"
        detail = {"loc": f"query.{name}", "msg": msg, "type": "value_error"}
        raise InvalidQuery(f"{name} {msg}", [detail]) from None


def alert_out(row: dict[str, Any], cls: type[AlertOut] = AlertOut, **extra: Any) -> AlertOut:
    # The `model` column holds the model label (for filtering); the API's `model` is the catalog entry.
    fields = {k: v for k, v in row.items() if k in cls.model_fields and k != "model" and k not in extra}
    return cls(**fields, model=row.get("model_info"), **extra)


def notification_out(row: dict[str, Any], alert_ids: list[int] | None = None) -> NotificationOut:
    fields = {k: v for k, v in row.items() if k in NotificationOut.model_fields and k != "alert_ids"}
    return NotificationOut(**fields, alert_ids=alert_ids or [])


@router.get("/alerts", response_model=Page[AlertOut], summary="Alert occurrences, newest first")
async def list_alerts(
    request: Request,
    status: Literal["firing", "resolved"] | None = None,
    alertname: str | None = None,
    severity: str | None = None,
    model: str | None = None,
    team: str | None = None,
    receiver: str | None = None,
    since: datetime | None = Query(None, description="startsAt at or after (RFC 3339)"),
    until: datetime | None = Query(None, description="startsAt before (RFC 3339)"),
    matcher: list[str] = Query(
        default=[], description='Alertmanager matcher, repeatable: severity=~"warning|critical"'
    ),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[AlertOut]:
    try:
        matchers = [history.query_matcher(m) for m in matcher]
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    filters = history.AlertFilter(
        status=status,
        alertname=alertname,
        severity=severity,
        model=model,
        team=team,
        receiver=receiver,
        since=in_utc("since", since),
        until=in_utc("until", until),
        matchers=matchers,
        model_label=request.app.state.receiver.settings.model_label,
    )
    before = decode_cursor("a", cursor)
    async with request.app.state.receiver.engine.connect() as conn:
        try:
            rows, last = await history.list_alerts(conn, filters, limit=limit, before_id=before)
        except RegexTooSlow as exc:
            raise InvalidQuery(str(exc)) from None
    return Page[AlertOut](items=[alert_out(r) for r in rows], next_cursor=encode_cursor("a", last))


@router.get("/alerts/{alert_id}", response_model=AlertDetail, summary="One alert with events, receipts, notifications")
async def get_alert(request: Request, alert_id: AlertId) -> AlertDetail:
    async with request.app.state.receiver.engine.connect() as conn:
        row = await history.get_alert(conn, alert_id)
    if row is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert_out(  # type: ignore[return-value]
        row,
        AlertDetail,
        events=row["events"],
        receipts=[ReceiptOut(**r) for r in row["receipts"]],
        notifications=[notification_out(n, [alert_id]) for n in row["notifications"]],
    )


@router.get("/receipts", response_model=Page[ReceiptOut], summary="Webhook deliveries, newest first")
async def list_receipts(
    request: Request,
    duplicate: bool | None = None,
    group_key: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[ReceiptOut]:
    async with request.app.state.receiver.engine.connect() as conn:
        rows, last = await history.list_receipts(
            conn, limit=limit, before_id=decode_cursor("r", cursor), duplicate=duplicate, group_key=group_key
        )
    return Page[ReceiptOut](items=[ReceiptOut(**r) for r in rows], next_cursor=encode_cursor("r", last))


@router.get("/models", summary="The model catalog with firing/resolved counts per model")
async def list_models(request: Request) -> dict[str, Any]:
    state = request.app.state.receiver
    async with state.engine.connect() as conn:
        counts = await history.model_counts(conn)
    items = []
    for entry in state.catalog.entries:
        info = entry.model_dump(exclude_none=True)
        info["alerts"] = counts.get(entry.name, {"firing": 0, "resolved": 0})
        items.append(info)
    known = {e.name for e in state.catalog.entries}
    uncatalogued = {name: c for name, c in counts.items() if name not in known}
    return {"items": items, "uncatalogued": uncatalogued}
