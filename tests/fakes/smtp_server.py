"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives.

aiosmtpd's Controller runs its own event loop on a thread, so the server answers async tests and a
receiver started as a subprocess alike; tests read the recorded mail from the object.

    server.host, server.port             where to connect (plain SMTP; STARTTLS if given a tls_context)
    server.received                      list of ReceivedMail (envelope + parsed EmailMessage)
    server.fail_next("RCPT", reply=...)  the next RCPT/DATA commands answer this reply instead
    server.require_auth(user, password)  AUTH PLAIN/LOGIN must match (AUTH is offered without TLS)
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

TEMPORARY_REPLY = "451 4.7.1 Try again later"
PERMANENT_REPLY = "550 5.1.1 No such user"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


class _Handler:
    """aiosmtpd hooks: record accepted mail, answer programmed failures, check credentials."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.faults: dict[str, list[str]] = {"RCPT": [], "DATA": []}
        self.credentials: tuple[str, str] | None = None

    def _take_fault(self, command: str) -> str | None:
        with self.lock:
            queue = self.faults[command]
            return queue.pop(0) if queue else None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        fault = self._take_fault("RCPT")
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self._take_fault("DATA")
        if fault is not None:
            return fault
        raw = envelope.original_content or envelope.content
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), parsed, raw))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        with self.lock:
            expected = self.credentials
        if expected is None:
            return AuthResult(success=True, auth_data=auth_data)
        ok = (
            isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == expected
        )
        # handled=False: aiosmtpd then answers 535 itself; handled=True would leave the client waiting.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class _EphemeralPortController(Controller):
    """Binds port 0; Controller otherwise connects back to the literal port it was given."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSmtpServer:
    """An aiosmtpd server on an ephemeral 127.0.0.1 port; `tls_context` enables STARTTLS."""

    host = "127.0.0.1"

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self._handler = _Handler()
        self._controller = _EphemeralPortController(
            self._handler,
            hostname=self.host,
            port=0,
            tls_context=tls_context,
            authenticator=self._handler.authenticate,
            auth_require_tls=False,
        )

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def fail_next(self, command: str, times: int = 1, reply: str = TEMPORARY_REPLY) -> None:
        """Answer the next `times` `command` ("RCPT" or "DATA") with `reply`."""
        with self._handler.lock:
            self._handler.faults[command].extend([reply] * times)

    def require_auth(self, username: str, password: str) -> None:
        with self._handler.lock:
            self._handler.credentials = (username, password)

    @property
    def received(self) -> list[ReceivedMail]:
        with self._handler.lock:
            return list(self._handler.received)


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtpServer]:
    """A running plain-SMTP FakeSmtpServer."""
    server = FakeSmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
