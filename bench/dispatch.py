"""Dispatch: N pending Slack notifications in the outbox, sent by `serve`'s dispatcher to the Slack fake.

The fake (tests/fakes/slack_api.py) answers at once on its own thread in this (orchestrating) process;
the receiver is a separate process. Each notification covers two stored alerts; recipients are
distinct email addresses, so each one's first message also pays users.lookupByEmail +
conversations.open (then cached in slack_directory). `slack_channel_interval` is 0s; batch size and
concurrency are the shipped defaults.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    cpu_seconds,
    receiver_cli,
    receiver_server,
    server_cpu_seconds,
    server_memory,
    system_busy_seconds,
    wait_quiet,
)
from bench.settings import BenchConfig

ALERTS_PER_NOTIFICATION = 2


def _dt(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="microseconds")


def populate(path: Path, n: int, recipients: list[str], workdir: Path) -> None:
    receiver_cli("db", "upgrade", database_url=f"sqlite:///{path}", workdir=workdir)
    now = datetime.now(UTC).replace(tzinfo=None)
    due = _dt(now - timedelta(seconds=1))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    alert_id = 0
    for i in range(n):
        nid = i + 1
        group_key = f'{{}}:{{alertname="ModelDrift", bench="{i}"}}'
        db.execute(
            "INSERT INTO receipts (id, received_at, receiver, group_key, status, digest, duplicate, alert_count,"
            " truncated_alerts, notification_reason, external_url, group_labels) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                nid,
                due,
                "bench",
                group_key,
                "firing",
                f"{nid:064x}",
                0,
                ALERTS_PER_NOTIFICATION,
                0,
                None,
                "http://alertmanager.monitoring:9093",
                json.dumps({"alertname": "ModelDrift"}),
            ),
        )
        db.execute(
            "INSERT INTO notifications (id, channel, recipient, kind, group_key, receipt_id, status, attempts,"
            " next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (nid, "slack", recipients[i % len(recipients)], "firing", group_key, nid, "pending", 0, due, due),
        )
        for k in range(ALERTS_PER_NOTIFICATION):
            alert_id += 1
            labels = {
                "alertname": "ModelDrift",
                "severity": "warning",
                "model": f"model-{i % 50:02d}",
                "namespace": "ml",
                "instance": f"pod-{i}-{k}",
            }
            annotations = {"summary": f"PSI drift on model-{i % 50:02d}", "description": "PSI 0.31 > 0.2 for 15m"}
            links = {"source": "http://prometheus.monitoring:9090/graph?g0.expr=model_psi+%3E+0.2"}
            db.execute(
                "INSERT INTO alerts (id, fingerprint, starts_at, ends_at, status, alertname, severity, model, team,"
                " receiver, group_key, labels, annotations, generator_url, first_seen_at, last_seen_at,"
                " last_event_at, resolved_at, model_info, links) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    alert_id,
                    f"{alert_id:016x}",
                    due,
                    None,
                    "firing",
                    "ModelDrift",
                    "warning",
                    labels["model"],
                    None,
                    "bench",
                    group_key,
                    json.dumps(labels),
                    json.dumps(annotations),
                    links["source"],
                    due,
                    due,
                    due,
                    None,
                    None,
                    json.dumps(links),
                ),
            )
            db.executemany(
                "INSERT INTO alert_labels (alert_id, name, value) VALUES (?,?,?)",
                [(alert_id, name, value) for name, value in labels.items()],
            )
            db.execute("INSERT INTO receipt_alerts (receipt_id, alert_id) VALUES (?,?)", (nid, alert_id))
            db.execute(
                "INSERT INTO events (alert_id, receipt_id, kind, reason, at) VALUES (?,?,?,?,?)",
                (alert_id, nid, "firing", "new_firing", due),
            )
            db.execute(
                "INSERT INTO notification_alerts (notification_id, alert_id, kind) VALUES (?,?,?)",
                (nid, alert_id, "firing"),
            )
    db.execute("COMMIT")
    db.close()


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall())


def run_dispatch(cfg: BenchConfig, *, instrumented: bool = False, notifications: int | None = None) -> dict[str, Any]:
    """Send the outbox; `instrumented` runs bench/diagnose.py's server and adds its counters."""
    try:
        from tests.fakes.slack_api import FakeSlackApi
    except ImportError as exc:  # the fake lives with the tests and needs their extras (pytest, aiohttp)
        return {"section": "dispatch", "skipped": f"tests/fakes/slack_api.py not importable: {exc}"}
    import yaml

    n = notifications or cfg.dispatch_notifications
    r = min(cfg.dispatch_recipients, n)
    recipients = [f"user{k:05d}@example.com" for k in range(r)]
    fake = FakeSlackApi()
    for k, email in enumerate(recipients):
        fake.add_user(email, f"UBENCH{k:05d}")
    path = cfg.workdir / f"dispatch-{uuid.uuid4().hex[:6]}.db"
    populate(path, n, recipients, cfg.workdir)
    config = cfg.workdir / f"dispatch-{path.stem}.yaml"
    fake.start()
    try:
        config.write_text(
            yaml.safe_dump(
                {
                    "slack": {"token": fake.token, "base_url": fake.base_url, "timeout": 10},
                    "dispatch": {"enabled": True, "slack_channel_interval": "0s", "poll_interval": "200ms"},
                }
            )
        )
        quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
        url = f"sqlite+aiosqlite:///{path}"
        stats = None
        with receiver_server(cfg.workdir, url, dispatch=True, config=config, instrumented=instrumented) as server:
            ready = time.monotonic()
            cpu0, system0, orchestrator0 = (
                server_cpu_seconds(server.pid),
                system_busy_seconds(),
                cpu_seconds(os.getpid()),
            )
            deadline = ready + cfg.dispatch_timeout
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                counts = _counts(path)
                if counts.get("sent", 0) + counts.get("failed", 0) >= n:
                    break
                time.sleep(0.2)
            wall = time.monotonic() - ready
            server_pct = 100 * (server_cpu_seconds(server.pid) - cpu0) / wall
            fake_pct = 100 * (cpu_seconds(os.getpid()) - orchestrator0) / wall
            other_pct = max(0.0, 100 * (system_busy_seconds() - system0) / wall - server_pct - fake_pct)
            rss = server_memory(server.pid).get("VmHWM", 0) / 1024
            if instrumented:
                with urllib.request.urlopen(f"{server.base}/bench/stats", timeout=10) as resp:  # noqa: S310
                    stats = json.load(resp)
        posted = fake.messages
        calls = fake.calls
    finally:
        fake.stop()
    with sqlite3.connect(path) as db:
        first, last = db.execute("SELECT min(sent_at), max(sent_at) FROM notifications WHERE status='sent'").fetchone()
        reasons = dict(
            db.execute("SELECT reason, count(*) FROM notifications WHERE status != 'sent' GROUP BY 1").fetchall()
        )
    if not cfg.keep_databases:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    sent = counts.get("sent", 0)
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() if first and last else 0.0
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    return {
        "section": "dispatch",
        "target": "sqlite",
        "notifications": n,
        "recipients": r,
        "sent": sent,
        "not_sent": {"counts": counts, "reasons": reasons},
        "notifications_per_s": (sent - 1) / span if span > 0 else float("nan"),
        "wall_s": wall,
        "wall_rate": sent / wall if wall > 0 else float("nan"),
        "posted_messages": len(posted),
        "slack_calls": by_method,
        "peak_rss_mb": rss,
        "server_cpu_pct": server_pct,
        "slack_fake_cpu_pct": fake_pct,
        "other_cpu_pct": other_pct,
        "busy_before_pct": quiet,
        **({"stats": stats} if stats else {}),
        "target_per_s": 200.0,
        "met": sent == n and span > 0 and (sent - 1) / span >= 200.0,
    }
