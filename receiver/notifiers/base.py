"""The one protocol every delivery channel implements, and the errors it raises.

Exception tree::

    DeliveryError            a send did not happen; always says whether to retry and why
    ├── TemporaryDeliveryError   network trouble, 5xx, 429, SMTP 4xx: retry (after retry_after if given)
    └── PermanentDeliveryError   bad recipient, bad credentials, SMTP 5xx: fail now, never retry

`reason` is a short stable token (e.g. ``slack_ratelimited``, ``smtp_451``) used as a metric label and
stored on the notification; `detail` is a human sentence. Neither may contain a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """A rendered notification, ready for one channel and one recipient."""

    channel: str  # "slack" | "email" | "log"
    recipient: str  # Slack user id (U…), Slack user email, or an email address
    subject: str  # email subject; Slack header / fallback first line
    text: str  # plain text body (email text part, Slack `text` fallback)
    html: str | None = None  # email HTML part
    blocks: list[dict[str, Any]] | None = None  # Slack Block Kit blocks
    # Provider ids of the earlier message this one belongs under (the firing message when this is
    # the resolved one): Slack {"channel": "D…", "ts": "…"}; email {"message_id": "<…>"}.
    thread: dict[str, str] | None = None
    # Slack only: blocks that replace the original (firing) message, e.g. to show it resolved.
    update_blocks: list[dict[str, Any]] | None = None
    update_text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra email headers (already CR/LF-free)


@dataclass(frozen=True)
class SendResult:
    """What the provider gave back, kept on the notification to thread later messages under it."""

    provider_ref: dict[str, str]


class DeliveryError(Exception):
    """A send that did not happen."""

    retryable: bool = False

    def __init__(self, reason: str, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class TemporaryDeliveryError(DeliveryError):
    """Retry later; `retry_after` (seconds) when the provider said how long to wait."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (unknown user, bad credentials, rejected address)."""

    retryable = False


class Notifier(Protocol):
    """One delivery channel."""

    channel: str

    async def send(self, message: Message) -> SendResult:
        """Deliver `message` or raise a DeliveryError saying whether to retry."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
