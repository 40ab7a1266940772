"""A fake Slack Web API on 127.0.0.1 that slack-sdk talks to through `base_url`.

It serves aiohttp.web from its own event loop on a background thread, so the same fake answers an
async test running in any loop and a receiver started as a subprocess; tests read the recorded state
directly from the object (all shared state sits behind one lock).

    fake.base_url                    "http://127.0.0.1:<port>/api/", pass to AsyncWebClient
    fake.token                       the only bearer token accepted (others get invalid_auth)
    fake.add_user(email, user_id)    users.lookupByEmail table; DM channel ids are "D" + user id
    fake.fail_next("chat.postMessage", status=429, retry_after=7)   programmable faults, also
        rate_limit_next, server_error_next, disconnect_next
    fake.calls / fake.calls_to(m)    every call as (method, params), faulted ones included
    fake.messages / fake.updates     posted messages (chat.update rewrites them) and update calls
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web

DEFAULT_TOKEN = "xoxb-fake-slack-token"
DEFAULT_USERS = {"alice@example.com": "UALICE01", "bob@example.com": "UBOB0002"}

Params = dict[str, Any]
_DISCONNECT = 0  # a _Fault status meaning "close the connection instead of answering"
_STALL = 1  # a _Fault status meaning "wait retry_after seconds, then answer normally if the client is still there"


@dataclass(frozen=True)
class Call:
    method: str
    params: Params


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str
    thread_ts: str | None
    text: str | None
    blocks: list[dict[str, Any]] | None


@dataclass
class _Fault:
    method: str | None  # None matches any method
    remaining: int
    status: int
    error: str | None  # None answers a non-JSON body, like a proxy's error page
    retry_after: int | None


class FakeSlackApi:
    """The Web API methods the receiver uses, with recorded calls and programmable faults."""

    def __init__(self, token: str = DEFAULT_TOKEN, users: dict[str, str] | None = None) -> None:
        self.token = token
        self.port = 0
        self._users = {email.lower(): uid for email, uid in (users or DEFAULT_USERS).items()}
        self._calls: list[Call] = []
        self._messages: list[PostedMessage] = []
        self._updates: list[Params] = []
        self._faults: list[_Fault] = []
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[Params], Params]] = {
            "auth.test": self._auth_test,
            "users.lookupByEmail": self._lookup_by_email,
            "conversations.open": self._conversations_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> None:
        """Serve on an ephemeral port; returns once the port is listening."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), daemon=True, name="fake-slack-api")
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake Slack API did not start: {failure}")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        # A short shutdown_timeout: clients may keep idle keep-alive connections open.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # reported to start(), which is waiting on `ready`
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    # -- programming and inspection (called from tests) ----------------------------------------------

    def add_user(self, email: str, user_id: str) -> None:
        with self._lock:
            self._users[email.lower()] = user_id

    def fail_next(
        self,
        method: str | None = None,
        times: int = 1,
        *,
        status: int = 200,
        error: str | None = "internal_error",
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (None: any) with this failure instead."""
        with self._lock:
            self._faults.append(_Fault(method, times, status, error, retry_after))

    def rate_limit_next(self, method: str | None = None, times: int = 1, retry_after: int = 30) -> None:
        self.fail_next(method, times, status=429, error="ratelimited", retry_after=retry_after)

    def server_error_next(self, method: str | None = None, times: int = 1) -> None:
        self.fail_next(method, times, status=500, error="internal_error")

    def disconnect_next(self, method: str | None = None, times: int = 1) -> None:
        """Drop the connection without answering (the client sees ServerDisconnectedError)."""
        self.fail_next(method, times, status=_DISCONNECT)

    def stall_next(self, method: str | None = None, seconds: int = 5, times: int = 1) -> None:
        """Hold the next calls for `seconds` before answering; a client gone by then leaves no trace
        (as if its request never completed), which is how a receiver killed mid-send looks to Slack."""
        self.fail_next(method, times, status=_STALL, retry_after=seconds)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Params]:
        return [call.params for call in self.calls if call.method == method]

    @property
    def messages(self) -> list[PostedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def updates(self) -> list[Params]:
        with self._lock:
            return list(self._updates)

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        with self._lock:
            self._calls.append(Call(method, params))
            fault = self._take_fault(method)
            if fault is None:
                return self._answer(request.headers.get("Authorization"), method, params)
        if fault.status == _STALL:
            await asyncio.sleep(fault.retry_after or 0)
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError
            with self._lock:
                return self._answer(request.headers.get("Authorization"), method, params)
        if fault.status == _DISCONNECT:
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp's way to abandon a request without a response
        return _fault_response(fault)

    def _answer(self, authorization: str | None, method: str, params: Params) -> web.Response:
        if authorization != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = self._methods.get(method)
        body = handler(params) if handler else {"ok": False, "error": "unknown_method"}
        return web.json_response(body)

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method in (None, method) and fault.remaining > 0:
                fault.remaining -= 1
                return fault
        return None

    # -- Web API methods (run with the lock held) ----------------------------------------------------

    def _auth_test(self, params: Params) -> Params:
        return {"ok": True, "user_id": "UBOTFAKE", "team_id": "TFAKE", "url": "https://fake.slack.com/"}

    def _lookup_by_email(self, params: Params) -> Params:
        user_id = self._users.get(str(params.get("email", "")).lower())
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": user_id, "profile": {"email": params["email"]}}}

    def _conversations_open(self, params: Params) -> Params:
        user_id = str(params.get("users", ""))
        if user_id not in self._users.values():
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": f"D{user_id}"}}

    def _post_message(self, params: Params) -> Params:
        channel = str(params.get("channel", ""))
        if channel not in {f"D{uid}" for uid in self._users.values()}:
            return {"ok": False, "error": "channel_not_found"}
        blocks = _blocks(params.get("blocks"))
        if not params.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        posted = PostedMessage(
            channel, f"1700000000.{next(self._ts):06d}", params.get("thread_ts"), params.get("text"), blocks
        )
        self._messages.append(posted)
        return {"ok": True, "channel": channel, "ts": posted.ts, "message": {"text": posted.text}}

    def _update(self, params: Params) -> Params:
        key = (params.get("channel"), params.get("ts"))
        for i, posted in enumerate(self._messages):
            if (posted.channel, posted.ts) == key:
                self._messages[i] = replace(
                    posted,
                    text=params.get("text", posted.text),
                    blocks=_blocks(params.get("blocks")) or posted.blocks,
                )
                self._updates.append(params)
                return {"ok": True, "channel": posted.channel, "ts": posted.ts}
        return {"ok": False, "error": "message_not_found"}


async def _read_params(request: web.Request) -> Params:
    """Query string plus a JSON or form body: slack-sdk uses all three depending on the method."""
    params: Params = dict(request.query)
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.can_read_body:
        params.update(await request.post())
    return params


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    # Form-encoded calls carry blocks as a JSON string, JSON calls as a list.
    return json.loads(value) if isinstance(value, str) else value


def _fault_response(fault: _Fault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if fault.error is None:
        return web.Response(
            status=fault.status, text="<html>upstream error</html>", content_type="text/html", headers=headers
        )
    return web.json_response({"ok": False, "error": fault.error}, status=fault.status, headers=headers)


@pytest.fixture
def slack_fake() -> Iterator[FakeSlackApi]:
    """A running FakeSlackApi with DEFAULT_USERS, accepting DEFAULT_TOKEN."""
    fake = FakeSlackApi()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
