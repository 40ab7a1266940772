"""EmailNotifier sending through aiosmtplib to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.notifiers.base import Message, PermanentDeliveryError, TemporaryDeliveryError
from receiver.notifiers.email import EmailNotifier, SmtpSettings
from tests.fakes.smtp_server import (  # noqa: F401  (fixture)
    PERMANENT_REPLY,
    TEMPORARY_REPLY,
    FakeSmtpServer,
    smtp_server,
)

PASSWORD = "s3cret-SMTP-pa55word"


def mail(**kwargs: object) -> Message:
    fields: dict = {
        "channel": "email",
        "recipient": "alice@example.com",
        "subject": "[FIRING] drift",
        "text": "model drift is firing",
    }
    return Message(**(fields | kwargs))


def settings_for(server: FakeSmtpServer, **kwargs: object) -> SmtpSettings:
    fields: dict = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "timeout": 5,
        "sender": "Alert receiver <alerts@ml.example.com>",
    }
    return SmtpSettings(**(fields | kwargs))


async def test_text_and_html_arrive_as_multipart_alternative(smtp_server):  # noqa: F811
    result = await EmailNotifier(settings_for(smtp_server)).send(mail(html="<p>model drift</p>"))

    [received] = smtp_server.received
    assert (received.mail_from, received.rcpt_tos) == ("alerts@ml.example.com", ["alice@example.com"])
    msg = received.message
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert (text.get_content_type(), text.get_content().strip()) == ("text/plain", "model drift is firing")
    assert (html.get_content_type(), html.get_content().strip()) == ("text/html", "<p>model drift</p>")
    assert msg["To"] == "alice@example.com" and msg["Subject"] == "[FIRING] drift"
    assert msg["From"] == "Alert receiver <alerts@ml.example.com>"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"].endswith("@ml.example.com>")
    assert result.provider_ref == {"message_id": msg["Message-ID"]}


async def test_text_only_message_is_plain(smtp_server):  # noqa: F811
    await EmailNotifier(settings_for(smtp_server)).send(mail())
    assert smtp_server.received[0].message.get_content_type() == "text/plain"


async def test_thread_sets_in_reply_to_and_references(smtp_server):  # noqa: F811
    notifier = EmailNotifier(settings_for(smtp_server))
    first = await notifier.send(mail())
    await notifier.send(mail(subject="[RESOLVED] drift", thread=first.provider_ref))

    reply = smtp_server.received[1].message
    assert reply["In-Reply-To"] == reply["References"] == first.provider_ref["message_id"]
    assert reply["Message-ID"] != first.provider_ref["message_id"]
    assert "In-Reply-To" not in smtp_server.received[0].message


async def test_header_injection_adds_no_header_and_no_recipient(smtp_server):  # noqa: F811
    injection = "x\r\nBcc: evil@example.com"
    await EmailNotifier(settings_for(smtp_server)).send(
        mail(
            subject=f"drift {injection}",
            headers={
                "X-Alert-Model": injection,
                "X-Evil\r\nBcc": "evil@example.com",
                "Bcc": "evil@example.com",
                "X-Alert-Fingerprint": "abc123",
            },
        )
    )

    [received] = smtp_server.received
    msg = received.message
    assert received.rcpt_tos == ["alice@example.com"]
    assert "Bcc" not in msg
    assert b"\nBcc:" not in received.raw and b"\nX-Evil" not in received.raw
    assert msg["Subject"] == "drift x Bcc: evil@example.com"
    assert msg["X-Alert-Model"] == "x Bcc: evil@example.com"
    assert msg["X-Alert-Fingerprint"] == "abc123"


async def test_recipient_list_reaches_at_most_the_first_address(smtp_server):  # noqa: F811
    notifier = EmailNotifier(settings_for(smtp_server))
    try:
        await notifier.send(mail(recipient="alice@example.com, evil@example.com"))
    except PermanentDeliveryError as exc:  # newer Pythons' strict parseaddr refuses the list outright
        assert exc.reason == "email_invalid_recipient"
    for received in smtp_server.received:
        assert received.rcpt_tos == ["alice@example.com"]
        assert received.message["To"] == "alice@example.com"


@pytest.mark.parametrize(
    ("command", "reply", "expected_type", "reason"),
    [
        ("RCPT", TEMPORARY_REPLY, TemporaryDeliveryError, "smtp_451"),
        ("RCPT", PERMANENT_REPLY, PermanentDeliveryError, "smtp_recipient_refused"),
        ("DATA", TEMPORARY_REPLY, TemporaryDeliveryError, "smtp_451"),
        ("DATA", "554 5.6.0 Message rejected", PermanentDeliveryError, "smtp_554"),
    ],
)
async def test_smtp_replies_map_to_retry_or_not(smtp_server, command, reply, expected_type, reason):  # noqa: F811
    smtp_server.fail_next(command, reply=reply)
    with pytest.raises(expected_type) as caught:
        await EmailNotifier(settings_for(smtp_server)).send(mail())
    assert caught.value.reason == reason
    assert smtp_server.received == []


async def test_temporary_failure_then_success(smtp_server):  # noqa: F811
    smtp_server.fail_next("RCPT")
    notifier = EmailNotifier(settings_for(smtp_server))
    with pytest.raises(TemporaryDeliveryError):
        await notifier.send(mail())
    await notifier.send(mail())
    assert len(smtp_server.received) == 1


def free_port() -> int:
    with socket.socket() as sock:  # free a moment ago, so nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_temporary():
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), tls="none", sender="a@example.com", timeout=5)
    with pytest.raises(TemporaryDeliveryError) as caught:
        await EmailNotifier(settings).send(mail())
    assert caught.value.reason == "smtp_network"


async def test_invalid_recipient_is_permanent_without_connecting():
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), tls="none", sender="a@example.com")
    with pytest.raises(PermanentDeliveryError) as caught:
        await EmailNotifier(settings).send(mail(recipient="not an address"))
    assert caught.value.reason == "email_invalid_recipient"


async def test_login_with_right_credentials_delivers(smtp_server):  # noqa: F811
    smtp_server.require_auth("alerts", PASSWORD)
    await EmailNotifier(settings_for(smtp_server, username="alerts", password=PASSWORD)).send(mail())
    assert len(smtp_server.received) == 1


async def test_wrong_password_is_permanent_auth_failure(smtp_server):  # noqa: F811
    smtp_server.require_auth("alerts", "the-right-one")
    with pytest.raises(PermanentDeliveryError) as caught:
        await EmailNotifier(settings_for(smtp_server, username="alerts", password=PASSWORD)).send(mail())
    assert caught.value.reason == "smtp_auth"


@pytest.mark.parametrize("fault", ["auth", "rcpt", "data", "refused"])
async def test_password_never_appears_in_errors_or_logs(smtp_server, caplog, fault):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    settings = settings_for(smtp_server, username="alerts", password=PASSWORD)
    if fault == "auth":
        smtp_server.require_auth("alerts", "the-right-one")
    elif fault == "refused":
        settings = settings_for(smtp_server, port=free_port(), username="alerts", password=PASSWORD)
    else:
        smtp_server.fail_next(fault.upper(), reply=f"550 5.7.1 rejected {PASSWORD}")  # a server echoing it
    with pytest.raises((TemporaryDeliveryError, PermanentDeliveryError)) as caught:
        await EmailNotifier(settings).send(mail())

    exc = caught.value
    # The fake server's own log ("mail.log") is the other side of the wire, not ours.
    our_logs = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    for text in (str(exc), repr(exc), exc.reason, exc.detail, repr(settings), *our_logs):
        assert PASSWORD not in text


def test_settings_reject_unknown_tls_mode():
    with pytest.raises(ValueError, match="tls"):
        SmtpSettings(host="h", sender="a@example.com", tls="ssl")  # type: ignore[arg-type]


@pytest.fixture
def self_signed_cert(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A certificate for 127.0.0.1 and its key, made with the openssl CLI (skips when absent)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


async def test_starttls_with_a_private_ca(self_signed_cert):
    cert, key = self_signed_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = FakeSmtpServer(tls_context=context)
    server.start()
    try:
        settings = settings_for(server, tls="starttls", ca_file=str(cert))
        await EmailNotifier(settings).send(mail())
        with pytest.raises(TemporaryDeliveryError):  # not trusted without the CA bundle
            await EmailNotifier(settings_for(server, tls="starttls")).send(mail())
    finally:
        server.stop()
    assert len(server.received) == 1
