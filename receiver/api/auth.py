"""Bearer or Basic auth against a configured token, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import Request

from receiver.api.errors import Unauthorized


def presented_secret(authorization: str | None) -> str | None:
    """The token from `Bearer <token>`, or the password from `Basic base64(user:password)`."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def require_token(request: Request, expected: str | None) -> None:
    """Raise Unauthorized unless the request carries `expected` (no check when it is None)."""
    if expected is None:
        return
    presented = presented_secret(request.headers.get("authorization"))
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("a valid bearer token (or basic auth password) is required")
