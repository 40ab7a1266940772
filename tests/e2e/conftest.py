"""Fixtures for the end-to-end tests: binaries (skip or fail when missing), the webhook token, the receiver.

The Slack and SMTP fakes (`slack_fake`, `smtp_server`) come from tests/conftest.py; they run on their own
threads, so the receiver subprocess reaches them over loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery import delivery_settings
from tests.e2e.processes import ReceiverProcess, require_tool
from tests.support import receiver_env

WEBHOOK_TOKEN = "e2e-webhook-token-0123456789"


@pytest.fixture
def alertmanager_bin() -> str:
    return require_tool("alertmanager")


@pytest.fixture
def prometheus_bin() -> str:
    return require_tool("prometheus")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """The receiver's webhook token in a file, for Alertmanager's `credentials_file`."""
    path = tmp_path / "webhook-token"
    path.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")  # Alertmanager trims the trailing newline
    path.chmod(0o600)
    return path


def receiver_values(slack_fake: Any, smtp_server: Any, **extra: Any) -> dict[str, Any]:
    """Receiver config: Slack and SMTP at the fakes, dispatcher on and fast, ServiceDown to the admin."""
    values = delivery_settings(slack_fake, smtp_server)
    values["dispatch"] = {
        "enabled": True,
        "poll_interval": "200ms",
        "slack_channel_interval": "0s",
        "backoff_initial": "1s",
    }
    values.update(extra)
    return values


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., ReceiverProcess]]:
    """Start `alert-receiver serve` as a process with config `values`; stopped at the end of the test.

    The database is a SQLite file in tmp_path and RECEIVER_WEBHOOK_TOKEN matches `token_file`.
    """
    started: list[ReceiverProcess] = []

    def start(values: dict[str, Any], **env: str) -> ReceiverProcess:
        n = len(started)
        config = tmp_path / f"receiver-{n}.yaml"
        config.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        environment = receiver_env(
            RECEIVER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / f'receiver-{n}.db'}",
            RECEIVER_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
            **env,
        )
        receiver = ReceiverProcess(tmp_path, config, environment)
        started.append(receiver)
        receiver.start()
        return receiver

    try:
        yield start
    finally:
        for receiver in started:
            receiver.stop()
