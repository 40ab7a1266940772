"""`alert-receiver` as a real process: serve over HTTP, db upgrade, check-config, SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from alembic.script import ScriptDirectory

from receiver.store.migrate import alembic_config
from tests.support import load_payload, receiver_env, running_receiver


def test_serve_stores_and_answers_over_real_http(tmp_path: Path) -> None:
    env = receiver_env(RECEIVER_WEBHOOK_TOKEN="tok-123")
    with running_receiver(env=env, cwd=tmp_path) as (base, proc):
        headers = {"Authorization": "Bearer tok-123"}
        assert httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")).status_code == 401
        r = httpx.post(f"{base}/webhook", json=load_payload("service-down-firing"), headers=headers)
        assert r.status_code == 200 and r.json()["events"] == {"firing": 1}
        bad = httpx.post(f"{base}/webhook", content=b"{oops", headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        items = httpx.get(f"{base}/api/v1/alerts").json()["items"]
        assert [a["labels"]["job"] for a in items] == ["service-a"]
        assert httpx.get(f"{base}/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    log = next(tmp_path.glob("receiver-*.log")).read_text()
    assert "Application shutdown complete" in log
    # The default database is ./alert-receiver.db in the working directory, and it holds the alert.
    with sqlite3.connect(tmp_path / "alert-receiver.db") as db:
        assert db.execute("SELECT alertname, status FROM alerts").fetchall() == [("ServiceDown", "firing")]


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        cwd=cwd,
        env=receiver_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'explicit.db'}"
    done = _cli("db", "upgrade", cwd=tmp_path, RECEIVER_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "explicit.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"alerts", "receipts", "events", "notifications", "alembic_version"} <= tables
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)
    down = _cli("db", "downgrade", "base", cwd=tmp_path, RECEIVER_DATABASE_URL=url)
    assert down.returncode == 0, down.stderr
    with sqlite3.connect(tmp_path / "explicit.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name='alerts'").fetchone() == (0,)


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    done = _cli("serve", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr and "Traceback" not in done.stderr


def test_send_test_posts_a_sample_alert(tmp_path: Path) -> None:
    with running_receiver(env=receiver_env(RECEIVER_WEBHOOK_TOKEN="t0k"), cwd=tmp_path) as (base, _):
        refused = _cli("send-test", "--url", f"{base}/webhook", cwd=tmp_path)
        assert refused.returncode == 1 and "401" in refused.stdout
        sent = _cli("send-test", "--url", f"{base}/webhook", "--token", "t0k", cwd=tmp_path)
        assert sent.returncode == 0 and '"firing":1' in sent.stdout
        items = httpx.get(f"{base}/api/v1/alerts").json()["items"]
        assert [a["labels"]["job"] for a in items] == ["service-a"]
    unreachable = _cli("send-test", "--url", "http://127.0.0.1:9/webhook", cwd=tmp_path)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


def test_render_prints_each_recipients_message_without_sending(tmp_path: Path) -> None:
    from tests.support import FIXTURES, REPO

    done = _cli(
        "render", "--payload", str(FIXTURES / "ha-duplicate-peer-a.json"),
        "--config", str(REPO / "receiver.example.yaml"), "--blocks", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "=== slack → alice@example.com" in done.stdout
    assert "=== email → alice@example.com" in done.stdout
    assert "[FIRING:3] ModelPredictionDrift fraud-detector" in done.stdout
    assert '"type": "header"' in done.stdout
    assert not (tmp_path / "alert-receiver.db").exists()  # nothing stored
