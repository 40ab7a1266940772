"""LogNotifier: what a default setup without Slack or SMTP shows instead of sending."""

from __future__ import annotations

import logging

from receiver.notifiers.base import Message
from receiver.notifiers.log import MAX_TEXT, LogNotifier


def message(text: str = "model drift is firing\nsecond line") -> Message:
    return Message(channel="email", recipient="alice@example.com", subject="[FIRING] drift", text=text)


async def test_logs_one_info_line_with_intent_recipient_subject_and_text(caplog):
    caplog.set_level(logging.INFO, logger="receiver.notifiers.log")
    result = await LogNotifier().send(message())

    [record] = [r for r in caplog.records if r.name == "receiver.notifiers.log"]
    line = record.getMessage()
    assert record.levelno == logging.INFO
    assert "email" in line and "alice@example.com" in line and "[FIRING] drift" in line
    assert "model drift is firing\\nsecond line" in line and "\n" not in line  # one line, even for text
    assert result.provider_ref["logged"] == "1"
    assert result.provider_ref["message_id"] in line


async def test_each_message_gets_its_own_id():
    notifier = LogNotifier()
    first, second = await notifier.send(message()), await notifier.send(message())
    assert first.provider_ref["message_id"] != second.provider_ref["message_id"]


async def test_long_text_is_truncated(caplog):
    caplog.set_level(logging.INFO, logger="receiver.notifiers.log")
    await LogNotifier().send(message("x" * (MAX_TEXT * 3)))
    line = caplog.records[-1].getMessage()
    assert "x" * MAX_TEXT in line and "x" * (MAX_TEXT + 1) not in line
