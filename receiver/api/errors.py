"""One JSON error body for every failure the API reports.

    {"error": {"code": "invalid_payload", "message": "…", "details": [{"loc": "alerts[0].startsAt", "msg": "…"}]}}

Exception tree::

    ApiError                 an answer other than success, with status, code and message
    ├── PayloadTooLarge      413: the body is over max_body_bytes
    ├── InvalidJson          400: the body is not JSON (or not UTF-8, or nested too deeply)
    ├── InvalidPayload       422: JSON that is not an Alertmanager v4 payload; details name each field
    ├── Unauthorized         401: missing or wrong token
    ├── NotFound             404
    └── ServiceUnavailable   503: storage cannot take the receipt now; Alertmanager retries
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class InvalidPayload(ApiError):
    status, code = 422, "invalid_payload"


class InvalidQuery(ApiError):
    status, code = 400, "invalid_query"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class NotFound(ApiError):
    status, code = 404, "not_found"


class ServiceUnavailable(ApiError):
    status, code = 503, "storage_unavailable"


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('alerts', 0, 'startsAt') -> 'alerts[0].startsAt'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def validation_details(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """Field path and message of each problem; never the offending value (it may be huge or secret)."""
    return [{"loc": format_loc(tuple(e["loc"])), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def api_error_response(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="alert-receiver"'} if exc.status == 401 else None
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _query_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", "the request is not valid", validation_details(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Logged by the server with a traceback; the client only learns that it was our fault.
        return JSONResponse(error_body("internal_error", "internal error; see the receiver's log"), 500)
