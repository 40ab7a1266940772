"""Secrets never appear in logs, errors or API output (every secret set to a recognisable value)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import yaml

from tests.delivery import delivery_settings
from tests.support import load_payload, receiver_env, running_receiver

SECRETS = {
    "webhook": "wh-SECRET-a1b2c3",
    "api": "api-SECRET-d4e5f6",
    "slack": "xoxb-SECRET-g7h8i9",
    "smtp": "smtp-SECRET-j0k1l2",
}


def _forms(secret: str) -> list[str]:
    """The secret as itself and as it would look inside Basic or SMTP AUTH PLAIN/LOGIN encodings."""
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0alerts\0{secret}".encode()).decode(),
        base64.b64encode(f"x:{secret}".encode()).decode(),
    ]


def test_no_secret_in_logs_errors_or_api(tmp_path: Path, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    slack_fake.token = SECRETS["slack"]
    smtp_server.require_auth("alerts", SECRETS["smtp"])
    values = delivery_settings(slack_fake, smtp_server)
    values["smtp"]["username"] = "alerts"
    values["dispatch"] = {
        "enabled": True,
        "poll_interval": "200ms",
        "slack_channel_interval": "0s",
        "backoff_initial": "1s",
    }
    config = tmp_path / "receiver.yaml"
    config.write_text(yaml.safe_dump(values))
    env = receiver_env(
        RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}",
        RECEIVER_WEBHOOK_TOKEN=SECRETS["webhook"],
        RECEIVER_API_TOKEN=SECRETS["api"],
        RECEIVER_SLACK_TOKEN=SECRETS["slack"],
        RECEIVER_SMTP_PASSWORD=SECRETS["smtp"],
        RECEIVER_LOG_LEVEL="DEBUG",
        RECEIVER_LOG_FORMAT="json",
    )
    log_path = tmp_path / "receiver.log"
    answers: list[str] = []
    # Slack rejects the first send (invalid_auth) and SMTP the first recipient, so error paths log too.
    slack_fake.fail_next("chat.postMessage", times=1, error="invalid_auth")
    smtp_server.fail_next("RCPT", times=1)
    with running_receiver("--config", str(config), "--access-log", env=env, cwd=tmp_path, log_path=log_path) as (
        base,
        _,
    ):
        api = {"Authorization": f"Bearer {SECRETS['api']}"}
        hook = {"Authorization": f"Bearer {SECRETS['webhook']}"}
        for response in (
            httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")),
            httpx.post(
                f"{base}/webhook", json=load_payload("service-down-firing"), headers={"Authorization": "Bearer no"}
            ),
            httpx.post(f"{base}/webhook", content=b"{bad", headers=hook),
            httpx.post(f"{base}/webhook", json=load_payload("service-down-firing"), headers=hook),
            httpx.get(f"{base}/api/v1/alerts"),
            httpx.get(
                f"{base}/api/v1/alerts", headers={"Authorization": "Basic " + base64.b64encode(b"u:bad").decode()}
            ),
        ):
            answers.append(response.text)
        assert [r for r in answers[:2]] and "unauthorized" in answers[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(smtp_server.received) < 1:
            time.sleep(0.2)
        assert smtp_server.received, "the email should arrive after the temporary 451"
        for path in ("/api/v1/alerts", "/api/v1/notifications", "/api/v1/receipts", "/api/v1/models"):
            r = httpx.get(f"{base}{path}", headers=api)
            assert r.status_code == 200
            answers.append(r.text)
        answers += [httpx.get(f"{base}/metrics").text, httpx.get(f"{base}/openapi.json").text]
        failed = httpx.get(f"{base}/api/v1/notifications", params={"status": "failed"}, headers=api).json()["items"]
        assert [n["reason"] for n in failed] == ["slack_invalid_auth"]
    output = log_path.read_text() + "\n".join(answers)
    assert "invalid_auth" in output and "DEBUG" in output.upper()  # the error paths did run and log
    for name, secret in SECRETS.items():
        for form in _forms(secret):
            assert form not in output, f"the {name} secret leaked as {form!r}"
