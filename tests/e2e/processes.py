"""Real Prometheus, Alertmanager, a scrape target and the receiver, as processes on free loopback ports.

Every helper here owns what it starts and stops it in a `finally` (context managers) or through an
explicit `stop()` that a fixture calls; every wait has a deadline.

    require_tool("alertmanager")            path of the binary; skip (or fail when RECEIVER_REQUIRE_TOOLS=1)
    run_alertmanager(binary, dir, config)   Alertmanager with generated config, storage in `dir`
    run_prometheus(binary, dir, config, rules)
    HttpTarget()                            a tiny /metrics server that can stop and start on one port
    ReceiverProcess(dir, config, env)       `python -m receiver serve` on a fixed port, restartable
    wait_until(fn, timeout, what)           poll until fn() is truthy; AssertionError naming `what`
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_ready

T = TypeVar("T")

# CI installs the binaries; there a missing one is a broken setup, not a reason to skip.
REQUIRE_TOOLS = os.environ.get("RECEIVER_REQUIRE_TOOLS") == "1"

# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs call it alertmanager.
_TOOLS = {
    "alertmanager": (("prometheus-alertmanager", "alertmanager"), "apt-get install prometheus-alertmanager"),
    "prometheus": (("prometheus",), "apt-get install prometheus"),
}
_STOP_TIMEOUT = 20.0
_READY_TIMEOUT = 60.0


def find_tool(kind: str) -> str | None:
    names, _ = _TOOLS[kind]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_tool(kind: str) -> str:
    """Path of the `kind` binary; skip the test when missing, fail instead when RECEIVER_REQUIRE_TOOLS=1."""
    found = find_tool(kind)
    if found:
        return found
    names, hint = _TOOLS[kind]
    message = f"end-to-end test needs {' or '.join(names)} on PATH ({hint})"
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}; RECEIVER_REQUIRE_TOOLS=1 makes a missing tool a failure")
    pytest.skip(message)


# -- waiting ------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:  # a process still starting or briefly down
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout:g}s: {what} (last value: {last!r})")
        time.sleep(interval)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- processes ----------------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; always reaps the process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT)


@contextmanager
def _process(cmd: Sequence[str], log_path: Path, ready_url: str, *, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_ready(ready_url, proc, timeout=_READY_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{cmd[0]} did not become ready: {exc}\n--- {log_path} ---\n{_tail(log_path)}") from None
        yield proc
    finally:
        _stop(proc)
        log.close()


def _metric_samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(url, timeout=5).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


# -- Alertmanager -------------------------------------------------------------------------------------


def alertmanager_config(
    webhook_url: str,
    token_file: Path,
    *,
    group_by: Sequence[str],
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """One route to one webhook receiver (send_resolved, Bearer token read from a file)."""
    return {
        "route": {
            "receiver": "alert-receiver",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "alert-receiver",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }


@dataclass
class Alertmanager:
    name: str
    url: str
    cluster_address: str | None
    log_path: Path
    proc: subprocess.Popen[bytes]

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts; AssertionError unless Alertmanager accepts them."""
        r = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert r.status_code == 200, f"{self.name} rejected alerts: {r.status_code} {r.text}"

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/v2/status", timeout=5).json()

    def alerts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()

    def webhook_counts(self) -> dict[str, float]:
        """Its own counters for the webhook integration.

        notifications / failed: flushes of a group (one per send decision, retries included in one);
        requests / failed_requests: HTTP attempts, each retry counted.
        """
        names = {
            "alertmanager_notifications_total": "notifications",
            "alertmanager_notifications_failed_total": "failed",
            "alertmanager_notification_requests_total": "requests",
            "alertmanager_notification_requests_failed_total": "failed_requests",
        }
        counts = dict.fromkeys(names.values(), 0.0)
        for name, labels, value in _metric_samples(f"{self.url}/metrics"):
            if labels.get("integration") == "webhook" and name in names:
                counts[names[name]] += value
        return counts


@contextmanager
def run_alertmanager(
    binary: str,
    workdir: Path,
    config: dict[str, Any],
    *,
    name: str = "alertmanager",
    cluster: bool = False,
    peers: Sequence[str] = (),
    peer_timeout: str = "2s",
    settle_timeout: str = "3s",
) -> Iterator[Alertmanager]:
    """Alertmanager on 127.0.0.1:<free port>; unpeered unless `cluster` (then listening for gossip)."""
    home = workdir / name
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster_address = f"127.0.0.1:{free_port()}" if cluster else None
    cmd = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        f"--cluster.listen-address={cluster_address or ''}",  # empty: no HA mode, no gossip
    ]
    if cluster:
        cmd += [f"--cluster.peer-timeout={peer_timeout}", f"--cluster.settle-timeout={settle_timeout}"]
        cmd += [f"--cluster.peer={peer}" for peer in peers]
    log_path = home / "alertmanager.log"
    with _process(cmd, log_path, f"{url}/-/ready", cwd=home) as proc:
        yield Alertmanager(name, url, cluster_address, log_path, proc)


def wait_cluster_ready(managers: Sequence[Alertmanager], timeout: float = 30) -> None:
    """Every peer sees all of them and reports its gossip settled."""

    def formed() -> bool:
        for am in managers:
            cluster = am.status()["cluster"]
            if cluster.get("status") != "ready" or len(cluster.get("peers") or []) != len(managers):
                return False
        return True

    wait_until(formed, timeout, f"Alertmanager cluster of {len(managers)} peers ready")


def api_alert(
    labels: dict[str, str],
    *,
    starts_at: datetime,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An alert for POST /api/v2/alerts. Fixed startsAt, so that several Alertmanagers agree on it."""
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations or {"summary": " ".join(f"{k}={v}" for k, v in sorted(labels.items()))},
        "startsAt": iso(starts_at),
        "generatorURL": "http://prometheus.e2e.invalid/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
    }
    if ends_at is not None:
        alert["endsAt"] = iso(ends_at)
    return alert


# -- Prometheus ---------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def active_alertmanagers(self) -> list[str]:
        r = httpx.get(f"{self.url}/api/v1/alertmanagers", timeout=5)
        return [am["url"] for am in r.json()["data"]["activeAlertmanagers"]]

    def alerts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]


@contextmanager
def run_prometheus(
    binary: str,
    workdir: Path,
    config: dict[str, Any],
    rules: dict[str, Any],
    *,
    resend_delay: str = "1s",
) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1:<free port> with `config` and one rule file, TSDB in `workdir`."""
    home = workdir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    rules_path = home / "rules.yml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    config = {**config, "rule_files": [str(rules_path)]}
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        # Prometheus re-sends active alerts (with endsAt = now + 4 x max(resend delay, eval interval))
        # and resolved ones at this pace; 1m by default.
        f"--rules.alert.resend-delay={resend_delay}",
    ]
    log_path = home / "prometheus.log"
    with _process(cmd, log_path, f"{url}/-/ready", cwd=home) as proc:
        yield Prometheus(url, log_path, proc)


# -- a scrape target ----------------------------------------------------------------------------------


class _MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: stopping really stops answering

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = b"# TYPE service_a_requests_total counter\nservice_a_requests_total 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@dataclass
class HttpTarget:
    """`service-a`: serves /metrics on 127.0.0.1:<port>; stop() and start() again keep the port."""

    port: int = field(default_factory=free_port)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # The port was ours a moment ago; on a busy machine something else might take it meanwhile.
        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), _MetricsHandler)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


# -- the receiver -------------------------------------------------------------------------------------


class ReceiverProcess:
    """`python -m receiver serve --config FILE --port P`, restartable on the same port and database."""

    def __init__(self, workdir: Path, config_path: Path, env: dict[str, str], port: int | None = None) -> None:
        self.workdir = workdir
        self.config_path = config_path
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"receiver-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self._log: Any = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "receiver already running"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "receiver", "serve", "--config", str(self.config_path), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT)
        self.lives += 1
        try:
            wait_ready(f"{self.url}/healthz", self.proc, timeout=_READY_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(
                f"receiver did not start: {exc}\n--- {self.log_path} ---\n{_tail(self.log_path)}"
            ) from None

    def stop(self) -> None:
        """Graceful stop (SIGTERM), like a rolling restart; SIGKILL only if it hangs."""
        if self.proc is not None:
            _stop(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def get_all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint, following `next_cursor` (bounded)."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):
            page = self.get(path, **params, **({"cursor": cursor} if cursor else {}))
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
        raise AssertionError(f"{path} did not stop paginating")

    def log_tail(self) -> str:
        return _tail(self.log_path, 60)
