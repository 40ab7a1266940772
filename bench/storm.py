"""Storm: N alerts across G groups pushed into a real Alertmanager, which sends them to the receiver.

Alertmanager (0.25 from Debian, clustering off) groups by `storm_group`, waits `group_wait` (all
alerts are posted well inside it, so each group goes out once, whole), and posts one webhook per
group. The clock starts at the first receipt the receiver stores (Alertmanager's first send); it stops
when every alert is stored and every fresh receipt has its notification queued (the dispatcher is
off, so nothing is sent). Alertmanager's own counters must show no failed webhook delivery.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import free_port, receiver_server, server_memory, stop_process, wait_http, wait_quiet
from bench.settings import BenchConfig

ALERTMANAGER = "prometheus-alertmanager"
GROUP_WAIT_S = 5


def _post(url: str, body: Any) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310 (loopback)
        r.read()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _state(path: Path) -> tuple[int, int, int, str | None]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        alerts = db.execute("SELECT count(*) FROM alerts").fetchone()[0]
        receipts = db.execute("SELECT count(*) FROM receipts WHERE duplicate = 0").fetchone()[0]
        missing = db.execute(
            "SELECT count(*) FROM receipts r WHERE duplicate = 0 AND NOT EXISTS "
            "(SELECT 1 FROM notifications n WHERE n.receipt_id = r.id)"
        ).fetchone()[0]
        first = db.execute("SELECT min(received_at) FROM receipts").fetchone()[0]
    return alerts, receipts, missing, first


def run_storm(cfg: BenchConfig) -> dict[str, Any]:
    binary = shutil.which(ALERTMANAGER)
    if binary is None:
        return {"section": "storm", "skipped": f"{ALERTMANAGER} is not installed"}
    n, groups = cfg.storm_alerts, cfg.storm_groups
    work = cfg.workdir / f"storm-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    db_path = work / "storm.db"
    quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
    with receiver_server(work, f"sqlite+aiosqlite:///{db_path}") as server:
        am_port = free_port()
        (work / "alertmanager.yml").write_text(
            "route:\n  receiver: alert-receiver\n  group_by: [alertname, storm_group]\n"
            f"  group_wait: {GROUP_WAIT_S}s\n  group_interval: 5m\n  repeat_interval: 4h\n"
            "receivers:\n- name: alert-receiver\n  webhook_configs:\n"
            f"  - url: {server.base}/webhook\n    send_resolved: true\n    max_alerts: 0\n"
        )
        am_log = open(work / "alertmanager.log", "wb")  # noqa: SIM115
        am = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=am_log,
            stderr=subprocess.STDOUT,
        )
        am_base = f"http://127.0.0.1:{am_port}"
        try:
            wait_http(f"{am_base}/-/ready", am)
            now = datetime.now(UTC)
            ends = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
            starts = now.isoformat().replace("+00:00", "Z")
            alerts = [
                {
                    "labels": {
                        "alertname": "StormAlert",
                        "storm_group": f"g{i % groups:03d}",
                        "instance": f"pod-{i}",
                        "severity": "warning",
                        "model": f"model-{i % 50:02d}",
                    },
                    "annotations": {"summary": f"storm alert {i}"},
                    "startsAt": starts,
                    "endsAt": ends,
                    "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up+%3D%3D+0",
                }
                for i in range(n)
            ]
            posted_at = time.monotonic()
            for start in range(0, n, 1000):
                _post(f"{am_base}/api/v2/alerts", alerts[start : start + 1000])
            post_s = time.monotonic() - posted_at
            deadline = time.monotonic() + GROUP_WAIT_S + 60
            done_wall = None
            state = (0, 0, 0, None)
            while time.monotonic() < deadline:
                state = _state(db_path)
                if state[0] >= n and state[2] == 0:
                    done_wall = datetime.now(UTC)
                    break
                time.sleep(0.05)
            time.sleep(1)  # let Alertmanager account for its last sends
            with urllib.request.urlopen(f"{am_base}/metrics", timeout=10) as r:  # noqa: S310
                metrics = r.read().decode()
            rss = server_memory(server.pid).get("VmHWM", 0) / 1024
        finally:
            stop_process(am)  # type: ignore[arg-type]
            am_log.close()
    alerts_stored, receipts, missing, first = state
    first_at = datetime.fromisoformat(first).replace(tzinfo=UTC) if first else None
    elapsed = (done_wall - first_at).total_seconds() if done_wall and first_at else float("nan")
    failed = _metric(metrics, "alertmanager_notifications_failed_total", integration="webhook")
    sent = _metric(metrics, "alertmanager_notifications_total", integration="webhook")
    requests_failed = _metric(metrics, "alertmanager_notification_requests_failed_total", integration="webhook")
    latency = re.findall(r'alertmanager_notification_latency_seconds_sum\{integration="webhook"\} (\S+)', metrics)
    if not cfg.keep_databases:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "section": "storm",
        "target": "sqlite",
        "alerts": n,
        "groups": groups,
        "post_to_alertmanager_s": post_s,
        "alerts_stored": alerts_stored,
        "receipts": receipts,
        "receipts_without_notification": missing,
        "seconds_from_first_send": elapsed,
        "am_webhook_sends": sent,
        "am_webhook_failed": failed,
        "am_webhook_requests_failed": requests_failed,
        "am_webhook_latency_sum_s": float(latency[0]) if latency else None,
        "peak_rss_mb": rss,
        "busy_before_pct": quiet,
        "met": alerts_stored >= n and missing == 0 and elapsed <= 10 and failed == 0 and requests_failed == 0,
    }
