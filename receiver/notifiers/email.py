"""Email through aiosmtplib: one SMTP connection per message, text + optional HTML alternative.

Header values never carry CR or LF (a label value such as ``"x\\r\\nBcc: evil@example.com"`` must not
become a header), and the envelope is always exactly the sender and `message.recipient`, never
recipients read from headers. The SMTP password appears in no error and no log line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Literal

import aiosmtplib

from receiver.notifiers.base import (
    DeliveryError,
    Message,
    PermanentDeliveryError,
    SendResult,
    TemporaryDeliveryError,
)

log = logging.getLogger(__name__)

_CRLF = re.compile(r"[\r\n]+")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except ':'
# Headers this module sets itself; an extra header must not replace them or add recipients.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP relay. `tls`: "none", "starttls" (usually port 587) or "tls" (465)."""

    host: str
    sender: str  # From header, e.g. "Alerts <alerts@example.com>"
    port: int = 587
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None  # CA bundle for a relay whose certificate a private CA signed

    def __post_init__(self) -> None:
        if self.tls not in ("none", "starttls", "tls"):
            raise ValueError(f"tls must be none, starttls or tls, not {self.tls!r}")


class EmailNotifier:
    """Sends Messages by SMTP; raises DeliveryError with an `smtp_*` reason on failure."""

    channel = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, message: Message) -> SendResult:
        recipient = parseaddr(_clean(message.recipient))[1]
        if "@" not in recipient:
            raise PermanentDeliveryError("email_invalid_recipient", "recipient is not one email address")
        mail = build_email(message, sender=self._settings.sender, to=recipient)
        try:
            await aiosmtplib.send(
                mail,
                sender=parseaddr(self._settings.sender)[1],
                recipients=[recipient],
                **self._connection_args(),
            )
        except aiosmtplib.SMTPException as exc:
            raise _scrubbed(smtp_error(exc), self._settings.password) from None
        except OSError as exc:  # refused, unreachable, TLS handshake, timeouts (TimeoutError is one)
            raise _scrubbed(TemporaryDeliveryError("smtp_network", _describe(exc)), self._settings.password) from None
        return SendResult({"message_id": str(mail["Message-ID"])})

    async def aclose(self) -> None:
        """Nothing to release: every send opens and closes its own connection."""

    def _connection_args(self) -> dict[str, Any]:
        s = self._settings
        return {
            "hostname": s.host,
            "port": s.port,
            "timeout": s.timeout,
            "username": s.username or None,
            "password": s.password or None,
            "use_tls": s.tls == "tls",
            # False, not aiosmtplib's default None, which silently upgrades only if offered.
            "start_tls": s.tls == "starttls",
            "cert_bundle": s.ca_file,
        }


def build_email(message: Message, *, sender: str, to: str) -> EmailMessage:
    """The EmailMessage for `message` addressed to `to`, every header value free of CR/LF."""
    mail = EmailMessage()
    mail["From"] = _clean(sender)
    mail["To"] = _clean(to)  # the envelope recipient, so the header cannot name anyone else
    mail["Subject"] = _clean(message.subject)
    mail["Date"] = format_datetime(datetime.now(UTC))
    # An explicit domain: without one make_msgid asks DNS for this host's FQDN, which can hang.
    mail["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "alert-receiver")
    if message.thread and message.thread.get("message_id"):
        parent = _clean(message.thread["message_id"])
        mail["In-Reply-To"] = parent
        mail["References"] = parent
    for name, value in message.headers.items():
        if _HEADER_NAME.fullmatch(name) and name.lower() not in _RESERVED:
            mail[name] = _clean(value)
        else:
            log.warning("dropping email header %r: reserved or not a valid header name", name[:80])
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail


def smtp_error(exc: aiosmtplib.SMTPException) -> DeliveryError:
    """Map an aiosmtplib error to a DeliveryError: 4xx and network trouble retry, 5xx do not."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # The server's text is left out: some servers echo what they were sent.
        return PermanentDeliveryError("smtp_auth", f"SMTP server rejected the credentials ({exc.code})")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)[:300]
        if codes and all(400 <= code < 500 for code in codes):
            return TemporaryDeliveryError(f"smtp_{codes[0]}", detail)
        return PermanentDeliveryError("smtp_recipient_refused", detail)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"{exc.code} {exc.message}"[:300]
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(f"smtp_{exc.code}", detail)
        if 400 <= exc.code < 500:
            return TemporaryDeliveryError(f"smtp_{exc.code}", detail)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. STARTTLS or AUTH not offered: configuration
        return PermanentDeliveryError("smtp_not_supported", _describe(exc))
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected)):
        return TemporaryDeliveryError("smtp_network", _describe(exc))
    return TemporaryDeliveryError("smtp_error", _describe(exc))


def _clean(value: str) -> str:
    return _CRLF.sub(" ", value).strip()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _scrubbed(error: DeliveryError, password: str | None) -> DeliveryError:
    """Defence in depth: `error` with any occurrence of the password masked."""
    if not password or password not in str(error):
        return error
    return type(error)(
        error.reason.replace(password, "***"),
        error.detail.replace(password, "***"),
        retry_after=error.retry_after,
    )
