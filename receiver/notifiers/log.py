"""A notifier that only logs what it would send: the default when Slack or SMTP is not configured."""

from __future__ import annotations

import logging
import uuid

from receiver.notifiers.base import Message, SendResult

log = logging.getLogger(__name__)

MAX_TEXT = 2000


class LogNotifier:
    """Logs one INFO line per message and always succeeds."""

    channel = "log"

    async def send(self, message: Message) -> SendResult:
        message_id = f"log-{uuid.uuid4().hex}"
        text = message.text if len(message.text) <= MAX_TEXT else message.text[:MAX_TEXT] + "…"
        # %r keeps a message's newlines (and any forged log lines in label values) on one line.
        log.info(
            "would send %s to %r: subject=%r text=%r id=%s",
            message.channel,
            message.recipient,
            message.subject,
            text,
            message_id,
        )
        return SendResult({"logged": "1", "message_id": message_id})

    async def aclose(self) -> None:
        """Nothing to release."""
