"""POST /webhook: Alertmanager's webhook_configs target."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from receiver.api.auth import require_token
from receiver.api.errors import (
    ApiError,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    ServiceUnavailable,
    api_error_response,
    validation_details,
)
from receiver.schemas import WebhookPayload, WebhookResult
from receiver.writer import StorageUnavailable

router = APIRouter()

# The body is read and validated by hand (size limit first, our error format), so FastAPI does not
# see a body parameter; the schema is declared here, with its nested models as OpenAPI components.
PAYLOAD_SCHEMA = WebhookPayload.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
PAYLOAD_COMPONENTS = PAYLOAD_SCHEMA.pop("$defs", {})
_PAYLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PAYLOAD_SCHEMA}},
    }
}


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_payload(body: bytes) -> WebhookPayload:
    """Validate an Alertmanager v4 payload; InvalidJson or InvalidPayload naming each bad field."""
    if not body.strip():
        raise InvalidJson("the body is empty; expected an Alertmanager webhook payload (JSON)")
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidJson(f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            raise InvalidPayload("the body must be a JSON object", validation_details(exc)) from None
        raise InvalidPayload("not an Alertmanager webhook payload (version 4)", validation_details(exc)) from None
    if b"\\u0000" in body or b"\x00" in body:  # a byte search keeps the rewrite off the hot path
        payload = without_nul(payload)
    return payload


def without_nul(payload: WebhookPayload) -> WebhookPayload:
    """The payload with every NUL character replaced by U+FFFD.

    PostgreSQL cannot store NUL in text, so such a webhook would fail on every retry and the alert be
    lost. Replacing the character (on SQLite too, so both stores agree) keeps the alert and shows where
    the character was. Fingerprints were taken before, from the labels as sent.
    """
    return WebhookPayload.model_validate(_replace_nul(payload.model_dump(by_alias=True)))


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(k): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nul(v) for v in value]
    return value


@router.post(
    "/webhook",
    response_model=WebhookResult,
    summary="Receive an Alertmanager webhook (version 4)",
    description="Answers 200 once the receipt and its alerts are committed; 503 when storage cannot take it.",
    openapi_extra=_PAYLOAD_BODY,
    responses={400: {}, 401: {}, 413: {}, 422: {}, 503: {}},
)
async def receive_webhook(request: Request) -> Response:
    state = request.app.state.receiver
    token = state.settings.webhook_token
    require_token(request, token.get_secret_value() if token else None)
    try:
        with state.ingestor.incoming():
            payload = parse_payload(await read_limited_body(request, state.settings.max_body_bytes))
            committed = state.ingestor.enqueue(payload)
        outcome = await committed
    except StorageUnavailable as exc:
        raise ServiceUnavailable("the receipt could not be stored; retry later") from exc
    except ClientDisconnect:  # e.g. Alertmanager gave up on a slow send: nothing was stored, it retries
        state.log.info("webhook sender went away before its body arrived; nothing stored")
        return Response(status_code=400)  # nobody reads it; uvicorn needs an answer to close the request
    state.metrics.record_ingest(payload, outcome)
    state.log.info(
        "receipt %s %s: %d alerts, events %s, %d notifications queued",
        outcome.receipt_id,
        "duplicate" if outcome.duplicate else "stored",
        len(payload.alerts),
        dict(outcome.events),
        len(outcome.notification_ids),
        extra={"receipt_id": outcome.receipt_id},
    )
    if outcome.notification_ids:
        state.wake_dispatcher()
    result = WebhookResult(
        receipt_id=outcome.receipt_id,
        duplicate=outcome.duplicate,
        alerts=len(payload.alerts),
        events=dict(outcome.events),
        notifications=len(outcome.notification_ids),
    )
    # Serialised here: returning the model would have FastAPI validate it again against response_model.
    return Response(result.model_dump_json(), media_type="application/json")


async def serve_webhook(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /webhook as a plain ASGI app: the same handler and answers as the route above, without
    FastAPI's routing around it.

    Matching the route through the included routers, solving its (empty) dependencies and the
    exception and exit-stack middlewares cost about 45 µs per request, a ninth of what the serving
    process spends on a 10-alert webhook (`no storage` benchmark row: 2,670 -> 3,040 requests/s).
    The route stays declared for the OpenAPI document; app.py's WebhookTimer sends POST /webhook here.
    Exceptions other than ApiError propagate as they do from the route (to the server's 500 handler).
    What FastAPI would add around the route does not happen here: dependencies or limits declared
    on the route or its router, exception handlers for other types, and the route's name in
    OpenTelemetry spans. Anything POST /webhook needs belongs in `receive_webhook` itself.
    """
    try:
        response = await receive_webhook(Request(scope, receive))
    except ApiError as exc:
        response = api_error_response(exc)
    await response(scope, receive, send)
