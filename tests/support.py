"""Helpers shared by tests: fixture payloads, payload builders, free ports, a receiver subprocess."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def load_payload(name: str) -> dict[str, Any]:
    """A JSON fixture by file name (without .json)."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def make_alert(
    alertname: str = "ModelDrift",
    *,
    status: str = "firing",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    """An alert as Alertmanager sends it (nanosecond startsAt, zero endsAt while firing)."""
    start = starts_at or datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    end = ends_at or (start + timedelta(minutes=5) if status == "resolved" else None)
    return {
        "status": status,
        "labels": {"alertname": alertname, "severity": "warning", **labels},
        "annotations": {"summary": f"{alertname} on {labels.get('model', 'service')}"},
        "startsAt": start.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
        "endsAt": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if end else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=model_psi+%3E+0.2&g0.tab=1",
    }


def make_payload(
    alerts: list[dict[str, Any]], *, group_key: str = '{}:{alertname="ModelDrift"}', **extra: Any
) -> dict[str, Any]:
    """A version 4 payload around `alerts`; status is firing if any alert fires."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "receiver": "alert-receiver",
        "status": status,
        "alerts": copy.deepcopy(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receiver_env(**values: str) -> dict[str, str]:
    """The environment for a receiver subprocess: ours without RECEIVER_* leftovers, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(values)
    return env


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout}s")


@contextmanager
def running_receiver(
    *args: str, env: dict[str, str], cwd: Path, log_path: Path | None = None, new_session: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`alert-receiver serve` as a real process on a free port; yields (base URL, process).

    `new_session`: in a process group of its own (its pid is the group id), as under a terminal."""
    port = free_port()
    log = open(log_path or (cwd / f"receiver-{port}.log"), "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "receiver", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
