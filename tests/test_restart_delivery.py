"""Pending notifications survive a SIGKILL of the receiver and are delivered, once, after restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import yaml

from tests.delivery import delivery_settings
from tests.support import load_payload, receiver_env, running_receiver


def _wait_for(predicate, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_pending_notifications_are_sent_after_sigkill_and_restart(tmp_path: Path, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "receiver.yaml"
    values = delivery_settings(slack_fake, smtp_server)
    values["dispatch"] = {"enabled": True, "poll_interval": "200ms", "slack_channel_interval": "0s"}
    config.write_text(yaml.safe_dump(values))
    db = f"sqlite:///{tmp_path / 'restart.db'}"

    # First life: dispatch switched off by the environment, so the outbox fills and nothing is sent.
    env = receiver_env(RECEIVER_DATABASE_URL=db, RECEIVER_DISPATCH__ENABLED="false")
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, proc):
        r = httpx.post(f"{base}/webhook", json=load_payload("ha-duplicate-peer-a"))
        assert r.status_code == 200 and r.json()["notifications"] == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert slack_fake.messages == [] and smtp_server.received == []

    # Second life: the dispatcher finds the pending rows and delivers each once.
    env = receiver_env(RECEIVER_DATABASE_URL=db)
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, _):
        assert _wait_for(lambda: len(slack_fake.messages) >= 1 and len(smtp_server.received) >= 1)
        sent_url = f"{base}/api/v1/notifications?status=sent"
        assert _wait_for(lambda: len(httpx.get(sent_url).json()["items"]) == 2)
        again = httpx.post(f"{base}/webhook", json=load_payload("ha-duplicate-peer-b"))
        assert again.json()["duplicate"] is True
    assert len(slack_fake.messages) == 1 and len(smtp_server.received) == 1


def test_killed_while_sending_is_sent_once_after_the_lease(tmp_path: Path, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "receiver.yaml"
    values = delivery_settings(slack_fake, smtp_server)
    values["dispatch"] = {"enabled": True, "poll_interval": "200ms", "slack_channel_interval": "0s", "lease": "2s"}
    config.write_text(yaml.safe_dump(values))
    env = receiver_env(RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / 'inflight.db'}")
    slack_fake.stall_next("chat.postMessage", seconds=5)
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, proc):
        assert httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")).status_code == 200
        assert _wait_for(lambda: len(slack_fake.calls_to("chat.postMessage")) == 1)  # the send is in flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(5.5)  # the stalled request finds its client gone and leaves no message
    assert slack_fake.messages == []
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, _):
        sent_url = f"{base}/api/v1/notifications?status=sent"
        assert _wait_for(lambda: len(httpx.get(sent_url).json()["items"]) == 2)
    assert len(slack_fake.messages) == 1 and len(smtp_server.received) == 1


def test_sigterm_finishes_the_send_in_flight(tmp_path: Path, slack_fake, smtp_server) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "receiver.yaml"
    values = delivery_settings(slack_fake, smtp_server)
    values["dispatch"] = {"enabled": True, "poll_interval": "200ms", "slack_channel_interval": "0s"}
    config.write_text(yaml.safe_dump(values))
    env = receiver_env(RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / 'term.db'}")
    slack_fake.stall_next("chat.postMessage", seconds=2)
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, proc):
        assert httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")).status_code == 200
        assert _wait_for(lambda: len(slack_fake.calls_to("chat.postMessage")) == 1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(slack_fake.messages) == 1  # the stalled send was allowed to finish
    with running_receiver("--config", str(config), env=env, cwd=tmp_path) as (base, _):
        rows = httpx.get(f"{base}/api/v1/notifications").json()["items"]
        assert {r["status"] for r in rows} == {"sent"}  # recorded before exit: nothing to send again
    assert len(slack_fake.messages) == 1
