"""Ingest: the receiver (SQLite, PostgreSQL) against the parse-only baseline, side by side; and memory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench import pg
from bench.common import (
    REPO,
    Server,
    baseline_server,
    clean_env,
    receiver_server,
    server_memory,
    wait_quiet,
)
from bench.settings import BenchConfig

SIZES = (1, 10, 100)
NO_STORAGE = "no storage"  # the ingest table's row for bench/nostore.py: not a target, a ceiling


def loadgen_command(port: int, *, alerts: int, duration: float, warmup: float, extra: Sequence[str] = ()) -> list[str]:
    """The command line of bench.loadgen's webhook mode against a server on `port` (a new run id)."""
    return [
        sys.executable,
        "-m",
        "bench.loadgen",
        "webhook",
        *("--port", str(port), "--alerts", str(alerts), "--duration", str(duration), "--warmup", str(warmup)),
        *("--run-id", uuid.uuid4().hex[:8], *extra),
    ]


def loadgen(
    server: Server,
    *,
    alerts: int,
    duration: float,
    warmup: float,
    max_requests: int,
    concurrency: int = 16,
    postgres: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run bench.loadgen in its own process against `server`; its JSON result."""
    cmd = loadgen_command(
        server.port,
        alerts=alerts,
        duration=duration,
        warmup=warmup,
        extra=["--max-requests", str(max_requests), "--concurrency", str(concurrency), "--server-pid", str(server.pid)],
    )
    if postgres:
        cmd.append("--postgres")
    limit = timeout or (duration + warmup + 120)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=limit)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _sqlite_count(path: Path, table: str = "alerts") -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _row(target: str, size: int, result: dict[str, Any], server: Server, quiet: float) -> dict[str, Any]:
    status = server_memory(server.pid)
    if result.get("requests_failed") or result.get("errors"):
        result["server_log_tail"] = server.log_path.read_text(errors="replace").splitlines()[-40:]
    return {
        "section": "ingest",
        "target": target,
        "alerts_per_payload": size,
        "peak_rss_mb": status.get("VmHWM", 0) / 1024,
        "busy_before_pct": quiet,
        **result,
    }


def run_ingest(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Per payload size: baseline, the receiver without storage (a ceiling), SQLite, PostgreSQL, one after the
    other (fresh process and database each)."""
    rows: list[dict[str, Any]] = []
    params = {"duration": cfg.ingest_seconds, "warmup": cfg.ingest_warmup, "max_requests": cfg.ingest_max_requests}
    for size in SIZES:
        quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
        with baseline_server(cfg.workdir) as server:
            result = loadgen(server, alerts=size, **params)
            rows.append(_row("baseline", size, result, server, quiet))
        cfg.log(rows[-1])

        # The receiver with storage taken out (bench/nostore.py): the ceiling its serving side sets.
        quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
        ceiling_db = cfg.workdir / f"nostore-{size}-{uuid.uuid4().hex[:6]}.db"  # migrated at start, then unused
        with receiver_server(cfg.workdir, f"sqlite+aiosqlite:///{ceiling_db}", no_storage=True) as server:
            result = loadgen(server, alerts=size, **params)
            rows.append(_row(NO_STORAGE, size, result, server, quiet))
        if _sqlite_count(ceiling_db, "receipts"):  # the ceiling is only one if nothing was stored
            raise RuntimeError("bench/nostore.py stored receipts: its writer replacement is not in effect")
        cfg.log(rows[-1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{ceiling_db}{suffix}").unlink(missing_ok=True)

        db_path = cfg.workdir / f"ingest-{size}-{uuid.uuid4().hex[:6]}.db"
        quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
        with receiver_server(cfg.workdir, f"sqlite+aiosqlite:///{db_path}") as server:
            result = loadgen(server, alerts=size, **params)
            row = _row("sqlite", size, result, server, quiet)
        row["stored_alerts"] = _sqlite_count(db_path)
        rows.append(row)
        cfg.log(row)
        if not cfg.keep_databases:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)

        if cfg.pg_admin_url is None:
            rows.append(
                {"section": "ingest", "target": "postgresql", "alerts_per_payload": size, "skipped": cfg.pg_skip_reason}
            )
            cfg.log(rows[-1])
            continue
        with pg.fresh_database(cfg.pg_admin_url) as url:
            quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
            with receiver_server(cfg.workdir, url) as server:
                result = loadgen(server, alerts=size, postgres=True, **params)
                row = _row("postgresql", size, result, server, quiet)
            row["stored_alerts"] = int(pg.fetch(url, "SELECT count(*) FROM alerts")[0][0])
        rows.append(row)
        cfg.log(row)
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    base = {r["alerts_per_payload"]: r for r in rows if r["target"] == "baseline" and "skipped" not in r}
    for r in rows:
        b = base.get(r["alerts_per_payload"])
        if "skipped" in r or b is None or not b["alerts_per_s"]:
            continue
        r["ratio"] = r["alerts_per_s"] / b["alerts_per_s"]
        if "stored_alerts" in r:
            # Every 200 means committed: at least as many alerts must be stored as were acknowledged.
            r["durable_ok"] = r["stored_alerts"] >= r["acked_alerts_total"]


def run_memory(cfg: BenchConfig) -> dict[str, Any]:
    """Ingest `memory_alerts` alerts (100 per payload, 16 connections) into SQLite; track the server's RSS."""
    per_payload = 100
    db_path = cfg.workdir / f"memory-{uuid.uuid4().hex[:6]}.db"
    samples: list[tuple[float, int]] = []
    quiet = wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
    with receiver_server(cfg.workdir, f"sqlite+aiosqlite:///{db_path}") as server:
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append((time.monotonic() - started, server_memory(server.pid).get("VmRSS", 0)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = loadgen(
                server,
                alerts=per_payload,
                duration=cfg.memory_seconds,
                warmup=0,
                max_requests=cfg.memory_alerts // per_payload,
                timeout=cfg.memory_seconds + 120,
            )
        finally:
            stop.set()
            sampler.join()
        status = server_memory(server.pid)
    stored = _sqlite_count(db_path)
    size_mb = sum(Path(f"{db_path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db_path}{s}").exists()) / 2**20
    if not cfg.keep_databases:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    rss = [kb for _, kb in samples]

    def at(fraction: float) -> float:
        return rss[min(len(rss) - 1, int(fraction * len(rss)))] / 1024 if rss else float("nan")

    return {
        "section": "memory",
        "target": "sqlite",
        "alerts_goal": cfg.memory_alerts,
        "alerts_acked": result["acked_alerts_total"],
        "stored_alerts": stored,
        "seconds": result["window_s"],
        "alerts_per_s": result["alerts_per_s"],
        "p99_ms": result["p99_ms"],
        "peak_rss_mb": status.get("VmHWM", 0) / 1024,
        "rss_mb_at": {"10%": at(0.1), "50%": at(0.5), "90%": at(0.9), "end": status.get("VmRSS", 0) / 1024},
        "db_mb": size_mb,
        "busy_before_pct": quiet,
        "other_cpu_pct": result["other_cpu_pct"],
        "requests_failed": result["requests_failed"],
        "complete": stored >= cfg.memory_alerts,
        "met": stored >= cfg.memory_alerts and status.get("VmHWM", 0) / 1024 < 200,
    }


def run_diagnosis(cfg: BenchConfig, size: int = 10) -> list[dict[str, Any]]:
    """The instrumented server (bench/diagnose.py) under the same load: where the write path spends time."""
    found = []
    targets: list[tuple[str, Any]] = [("sqlite", None)]
    if cfg.pg_admin_url is not None:
        targets.append(("postgresql", cfg.pg_admin_url))
    for target, admin in targets:
        if target == "sqlite":
            ctx: Any = nullcontext(f"sqlite+aiosqlite:///{cfg.workdir / f'diag-{uuid.uuid4().hex[:6]}.db'}")
        else:
            ctx = pg.fresh_database(admin)
        with ctx as url:
            with receiver_server(cfg.workdir, url, instrumented=True) as server:
                result = loadgen(
                    server,
                    alerts=size,
                    duration=cfg.diagnose_seconds,
                    warmup=0.5,
                    max_requests=cfg.ingest_max_requests,
                    postgres=target == "postgresql",
                )
                with urllib.request.urlopen(f"{server.base}/bench/stats", timeout=10) as r:  # noqa: S310
                    stats = json.load(r)
        found.append(
            {
                "section": "diagnosis",
                "target": target,
                "alerts_per_payload": size,
                "requests_per_s": result["requests_per_s"],
                "p50_ms": result["p50_ms"],
                "stats": stats,
            }
        )
        cfg.log(found[-1])
    from bench.dispatch import run_dispatch

    d = run_dispatch(cfg, instrumented=True, notifications=min(1000, cfg.dispatch_notifications))
    if "stats" in d:
        found.append({"section": "diagnosis", "target": "sqlite", "dispatch": True, "notifications": d["sent"],
                      "notifications_per_s": d["notifications_per_s"], "stats": d["stats"]})  # fmt: skip
        cfg.log(found[-1])
    return found
