"""Slack direct messages through slack-sdk's AsyncWebClient.

A recipient (user id or email) is resolved once to a DM channel (users.lookupByEmail, then
conversations.open) and the channel id is cached in a SlackDirectory, so later sends are a single
chat.postMessage. A resolved notification is a reply in the firing message's thread, followed by a
chat.update that rewrites the firing message.

No retries happen in here: `build_slack_client` installs no retry handlers (AsyncWebClient's default
retries a dropped connection once; the optional rate-limit handler sleeps for Retry-After inside the
call). The dispatcher owns retry scheduling from TemporaryDeliveryError.retry_after, so a worker never
sleeps, and a chat.postMessage whose connection dropped after Slack accepted it is not silently posted
twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from receiver.notifiers.base import (
    DeliveryError,
    Message,
    PermanentDeliveryError,
    SendResult,
    TemporaryDeliveryError,
)

log = logging.getLogger(__name__)

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# Slack's own transient failures; everything else Slack names (bad user, token, scope, blocks) is
# permanent, since sending the same request again gets the same answer.
_TEMPORARY_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class SlackDirectory(Protocol):
    """Where a recipient's DM channel id is remembered between sends."""

    async def get(self, recipient: str) -> str | None: ...

    async def put(self, recipient: str, dm_channel: str) -> None: ...


class InMemorySlackDirectory:
    """A SlackDirectory for tests and for running without a database; forgets on restart."""

    def __init__(self) -> None:
        self._channels: dict[str, str] = {}

    async def get(self, recipient: str) -> str | None:
        return self._channels.get(recipient)

    async def put(self, recipient: str, dm_channel: str) -> None:
        self._channels[recipient] = dm_channel


def build_slack_client(token: str, base_url: str = AsyncWebClient.BASE_URL, timeout: float = 30.0) -> AsyncWebClient:
    """An AsyncWebClient that never retries by itself (see the module docstring)."""
    # retry_handlers=None would mean slack-sdk's defaults, hence the explicit empty list.
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,  # type: ignore[arg-type]
        retry_handlers=[],
    )


class SlackNotifier:
    """Sends Messages as Slack DMs; raises DeliveryError with a `slack_*` reason on failure."""

    channel = "slack"

    def __init__(self, client: AsyncWebClient, directory: SlackDirectory | None = None) -> None:
        self._client = client
        self._directory = directory if directory is not None else InMemorySlackDirectory()

    async def send(self, message: Message) -> SendResult:
        self._ensure_session()
        try:
            # A thread from another channel (say the log notifier's ref) has no Slack ids: post anew.
            if message.thread and "channel" in message.thread and "ts" in message.thread:
                return await self._reply(message, message.thread)
            return await self._post_new(message)
        except SlackApiError as exc:
            # `from None`: the chained error carries the request (and its Authorization header).
            raise api_error(exc) from None
        except _NETWORK_ERRORS as exc:
            raise _network_error(exc) from None

    async def aclose(self) -> None:
        session = self._client.session
        if session is not None and not session.closed:
            await session.close()

    def _ensure_session(self) -> None:
        # Without a session slack-sdk opens and closes one per call, i.e. a new TCP+TLS handshake for
        # each of lookup, open and post. A kept session carries no timeout of its own, so set it here.
        session = self._client.session
        if session is None or session.closed:
            timeout = aiohttp.ClientTimeout(total=self._client.timeout)
            self._client.session = aiohttp.ClientSession(timeout=timeout)

    async def _post_new(self, message: Message) -> SendResult:
        channel = await self._dm_channel(message.recipient)
        posted = await self._client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        return SendResult({"channel": posted["channel"], "ts": posted["ts"]})

    async def _reply(self, message: Message, thread: Mapping[str, str]) -> SendResult:
        channel, thread_ts = thread["channel"], thread["ts"]
        posted = await self._client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks
        )
        ref = {"channel": posted["channel"], "ts": posted["ts"], "thread_ts": thread_ts}
        if message.update_blocks is not None:
            update_error = await self._update_original(channel, thread_ts, message)
            if update_error is not None:
                ref["update_error"] = update_error
        return SendResult(ref)

    async def _update_original(self, channel: str, ts: str, message: Message) -> str | None:
        """Rewrite the thread's first message; returns a reason instead of raising.

        The reply is already delivered, so raising would make the dispatcher send it a second time.
        """
        # Slack wants a plain-text fallback with blocks; the reply's text describes the same change.
        text = message.update_text if message.update_text is not None else message.text
        try:
            await self._client.chat_update(channel=channel, ts=ts, blocks=message.update_blocks, text=text)
            return None
        except SlackApiError as exc:
            reason = api_error(exc).reason
        except _NETWORK_ERRORS as exc:
            reason = _network_error(exc).reason
        log.warning("slack chat.update of %s/%s failed after the reply was posted: %s", channel, ts, reason)
        return reason

    async def _dm_channel(self, recipient: str) -> str:
        cached = await self._directory.get(recipient)
        if cached:
            return cached
        user_id = await self._user_id(recipient)
        opened = await self._client.conversations_open(users=user_id)
        dm_channel: str = opened["channel"]["id"]
        await self._directory.put(recipient, dm_channel)
        return dm_channel

    async def _user_id(self, recipient: str) -> str:
        if _USER_ID.fullmatch(recipient):
            return recipient
        if "@" in recipient:
            found = await self._client.users_lookupByEmail(email=recipient)
            user_id: str = found["user"]["id"]
            return user_id
        raise PermanentDeliveryError("slack_invalid_recipient", "recipient is neither a user id nor an email")


def classify_slack_error(status: int | None, error: str | None, retry_after: float | None = None) -> DeliveryError:
    """Map a failed Web API call (HTTP status, Slack `error` field) to a DeliveryError."""
    token = re.sub(r"[^a-z0-9_]+", "_", error.lower())[:60] if error else None
    detail = f"Slack answered HTTP {status}" + (f" with error {token}" if token else "")
    if status == 429 or token == "ratelimited":
        return TemporaryDeliveryError("slack_ratelimited", detail, retry_after=retry_after)
    if token in _TEMPORARY_ERRORS or (status is not None and status >= 500):
        return TemporaryDeliveryError(f"slack_{token or f'http_{status}'}", detail)
    return PermanentDeliveryError(f"slack_{token or f'http_{status}'}", detail)


def api_error(exc: SlackApiError) -> DeliveryError:
    """The DeliveryError for a SlackApiError, built from status, error and Retry-After only."""
    response: Any = exc.response
    # On an undecodable body slack-sdk attaches the raw aiohttp response (`status`, no `data`).
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None) or {}
    return classify_slack_error(status, error, _retry_after(headers))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # Slack sends seconds; an HTTP-date is left to the dispatcher's backoff
        return None


def _network_error(exc: BaseException) -> TemporaryDeliveryError:
    # aiohttp's messages name host and URL, never request headers, so the token cannot appear.
    return TemporaryDeliveryError("slack_network", f"{type(exc).__name__}: {str(exc)[:200]}")
