"""Delivery channels. `build_notifiers` is the one place that lists them."""

from __future__ import annotations

from receiver.config import Settings
from receiver.notifiers.base import Notifier
from receiver.notifiers.email import EmailNotifier
from receiver.notifiers.email import SmtpSettings as SmtpConnection
from receiver.notifiers.log import LogNotifier
from receiver.notifiers.slack import SlackDirectory, SlackNotifier, build_slack_client


def build_notifiers(settings: Settings, directory: SlackDirectory | None = None) -> dict[str, Notifier]:
    """A notifier per channel; a channel that is not configured writes to the log instead."""
    log = LogNotifier()
    notifiers: dict[str, Notifier] = {"log": log, "slack": log, "email": log}
    if settings.slack.token is not None:
        client = build_slack_client(
            settings.slack.token.get_secret_value(), settings.slack.base_url, settings.slack.timeout
        )
        notifiers["slack"] = SlackNotifier(client, directory)
    smtp = settings.smtp
    if smtp.host:
        notifiers["email"] = EmailNotifier(
            SmtpConnection(
                host=smtp.host,
                port=smtp.port,
                tls=smtp.tls,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                sender=smtp.sender,
                timeout=smtp.timeout,
            )
        )
    return notifiers
