"""The outbox over HTTP: list notifications, re-queue a failed one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from receiver.api.errors import ApiError, NotFound
from receiver.api.history import MAX_ID, api_auth, decode_cursor, encode_cursor, notification_out
from receiver.schemas import NotificationOut, Page
from receiver.store import outbox

router = APIRouter(prefix="/api/v1", tags=["notifications"], dependencies=[Depends(api_auth)])


class Conflict(ApiError):
    status, code = 409, "conflict"


@router.get("/notifications", response_model=Page[NotificationOut], summary="Notifications, newest first")
async def list_notifications(
    request: Request,
    status: Literal["pending", "sent", "failed"] | None = None,
    channel: Literal["slack", "email", "log"] | None = None,
    recipient: str | None = None,
    alert_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[NotificationOut]:
    f = outbox.NotificationFilter(status=status, channel=channel, recipient=recipient, alert_id=alert_id)
    async with request.app.state.receiver.engine.connect() as conn:
        rows, last = await outbox.list_notifications(conn, f, limit=limit, before_id=decode_cursor("n", cursor))
    items = [notification_out(r, r["alert_ids"]) for r in rows]
    return Page[NotificationOut](items=items, next_cursor=encode_cursor("n", last))


@router.post(
    "/notifications/{notification_id}/retry",
    response_model=NotificationOut,
    summary="Re-queue a failed notification",
    responses={404: {}, 409: {}},
)
async def retry_notification(
    request: Request, notification_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> NotificationOut:
    state = request.app.state.receiver
    async with state.engine.begin() as conn:
        requeued = await outbox.requeue_failed(conn, notification_id, now=datetime.now(UTC))
        row = await outbox.get_notification(conn, notification_id)
        ids = await outbox.alert_ids_of(conn, [notification_id]) if row else {}
    if row is None:
        raise NotFound(f"no notification with id {notification_id}")
    if not requeued:
        raise Conflict(f"notification {notification_id} is {row['status']}; only failed ones can be retried")
    state.wake_dispatcher()
    return notification_out(row, ids[notification_id])
