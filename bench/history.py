"""History: a database with N stored alerts, populated directly, then timed through the real API.

The schema comes from `alert-receiver db upgrade`; rows are written straight into it, shaped like the
ones ingest writes (alerts + alert_labels, the receipts that carried them, receipt_alerts, firing and
resolved events, one log notification per receipt with its notification_alerts). Secondary indexes
(and the label table's primary key, its only index) are dropped during the load and built after it,
which is only a faster way to reach the same database. Built at once they are compact: a history
that grew by ingest over months has indexes with emptier pages (page splits), somewhat slower to read.

Data, for N alerts spread over the last 30 days (ids in time order):
- alertname: 10 names round-robin, except every 10,007th alert, named `DiskFullRare` (about N/10,007);
- severity critical/warning/warning/info, model-00..49, team-0..7, namespace ns-0..9, receiver one of 3;
- instance `pod-<0..49,999>` at random, except every 50,000th alert, `pod-rare` (about N/50,000);
- 10 % firing, the rest resolved (with a resolved event and a second receipt).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import pg
from bench.common import REPO, clean_env, receiver_cli, receiver_server, server_cpu_seconds, server_memory, wait_quiet
from bench.payloads import ALERTNAMES, MODELS, NAMESPACES, SEVERITIES, TEAMS
from bench.settings import BenchConfig

RECEIVERS = ("ml-oncall", "platform", "data-quality")
RARE_NAME = "DiskFullRare"
RARE_INSTANCE = "pod-rare"
ALERTS_PER_RECEIPT = 10
SUMMARY_TARGET_MS = 50.0
DETAIL_TARGET_MS = 20.0


# -- the data -----------------------------------------------------------------------------------------


def _dt(moment: datetime) -> str:
    """How SQLAlchemy stores a naive UTC DateTime in SQLite."""
    return moment.isoformat(sep=" ", timespec="microseconds")


class Dataset:
    """Deterministic rows for `n` alerts; each generator yields tuples in table column order."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.n = n
        self.seed = seed
        self.now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        self.t0 = self.now - timedelta(days=30)
        self.step = timedelta(days=30) / max(n, 1)
        self.firing_receipts = -(-n // ALERTS_PER_RECEIPT)

    def alert_fields(self, i: int, rng: random.Random) -> dict[str, Any]:
        """Alert number i (0-based); its id is i + 1."""
        name = RARE_NAME if i % 10_007 == 5 else ALERTNAMES[i % len(ALERTNAMES)]
        instance = RARE_INSTANCE if i % 50_000 == 17 else f"pod-{rng.randrange(50_000)}"
        starts = self.t0 + self.step * i
        firing = rng.random() < 0.10
        ends = None if firing else starts + timedelta(minutes=rng.randrange(1, 60))
        labels = {
            "alertname": name,
            "severity": SEVERITIES[i % 4],
            "model": MODELS[i % 50],
            "team": TEAMS[i % 8],
            "namespace": NAMESPACES[i % 10],
            "job": "model-serving",
            "instance": instance,
        }
        return {
            "i": i,
            "name": name,
            "labels": labels,
            "starts": starts,
            "ends": ends,
            "firing": firing,
            "receiver": RECEIVERS[i % 3],
        }

    def alerts(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        for i in range(self.n):
            yield self.alert_fields(i, rng)

    def group_key(self, a: dict[str, Any]) -> str:
        return f'{{}}:{{alertname="{a["name"]}", model="{a["labels"]["model"]}"}}'

    def resolved_receipt_id(self, i: int) -> int:
        return self.firing_receipts + i // ALERTS_PER_RECEIPT + 1


def _alert_tuple(d: Dataset, a: dict[str, Any], as_text: bool) -> tuple[Any, ...]:
    i, labels = a["i"], a["labels"]
    first_seen = a["starts"] + timedelta(seconds=30)
    resolved_at = None if a["firing"] else a["ends"] + timedelta(seconds=30)
    last = resolved_at or first_seen
    gen_url = "http://prometheus.monitoring:9090/graph?g0.expr=model_psi+%3E+0.2&g0.tab=1"
    # As ingest stores them: the runbook (catalog or annotation); source and silence are built when read.
    links = {"runbook": f"https://runbooks.example.com/{labels['model']}"}
    annotations = {"summary": f"{a['name']} on {labels['model']}", "description": f"Stored alert {i}."}
    conv = _dt if as_text else (lambda x: x)
    return (
        i + 1,
        f"{(i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}",
        conv(a["starts"]),
        conv(a["ends"]) if a["ends"] else None,
        "firing" if a["firing"] else "resolved",
        a["name"],
        labels["severity"],
        labels["model"],
        labels["team"],
        a["receiver"],
        d.group_key(a),
        json.dumps(labels),
        json.dumps(annotations),
        gen_url,
        conv(first_seen),
        conv(last),
        conv(last),
        conv(resolved_at) if resolved_at else None,
        None,
        json.dumps(links),
        "http://alertmanager.monitoring:9093",
    )


ALERT_COLUMNS = (
    "id",
    "fingerprint",
    "starts_at",
    "ends_at",
    "status",
    "alertname",
    "severity",
    "model",
    "team",
    "receiver",
    "group_key",
    "labels",
    "annotations",
    "generator_url",
    "first_seen_at",
    "last_seen_at",
    "last_event_at",
    "resolved_at",
    "model_info",
    "links",
    "alertmanager_url",
)


def rows_in_chunks(d: Dataset, as_text: bool, chunk: int = 20_000) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """Rows for every table, `chunk` alerts at a time (a multiple of ALERTS_PER_RECEIPT), in id order."""
    conv = _dt if as_text else (lambda x: x)
    out: dict[str, list[tuple[Any, ...]]] = {}

    def reset() -> None:
        out.clear()
        for t in (
            "alerts",
            "alert_labels",
            "receipts",
            "receipt_alerts",
            "events",
            "notifications",
            "notification_alerts",
        ):
            out[t] = []

    reset()
    event_id = 0
    last_resolved_receipt = 0
    for a in d.alerts():
        i = a["i"]
        alert_id = i + 1
        out["alerts"].append(_alert_tuple(d, a, as_text))
        for name, value in a["labels"].items():
            out["alert_labels"].append((alert_id, name, value))
        firing_receipt = i // ALERTS_PER_RECEIPT + 1
        received = a["starts"] + timedelta(seconds=30)
        if i % ALERTS_PER_RECEIPT == 0:
            out["receipts"].append(_receipt(d, a, firing_receipt, received, "firing", conv))
            out["notifications"].append(_notification(d, a, firing_receipt, received, "firing", conv))
        out["receipt_alerts"].append((firing_receipt, alert_id))
        out["notification_alerts"].append((firing_receipt, alert_id, "firing"))
        event_id += 1
        out["events"].append((event_id, alert_id, firing_receipt, "firing", "new_firing", conv(received)))
        if not a["firing"]:
            rid = d.resolved_receipt_id(i)
            resolved = a["ends"] + timedelta(seconds=30)
            if rid != last_resolved_receipt:  # the group's first resolved alert brings its receipt
                last_resolved_receipt = rid
                out["receipts"].append(_receipt(d, a, rid, resolved, "resolved", conv))
                out["notifications"].append(_notification(d, a, rid, resolved, "resolved", conv))
            out["receipt_alerts"].append((rid, alert_id))
            out["notification_alerts"].append((rid, alert_id, "resolved"))
            event_id += 1
            out["events"].append((event_id, alert_id, rid, "resolved", "resolved", conv(resolved)))
        if len(out["alerts"]) >= chunk:
            yield out
            reset()
    if out["alerts"]:
        yield out


def _receipt(d: Dataset, a: dict[str, Any], rid: int, at: datetime, status: str, conv: Any) -> tuple[Any, ...]:
    digest = f"{rid:064x}"
    group_labels = json.dumps({"alertname": a["name"], "model": a["labels"]["model"]})
    return (
        rid,
        conv(at),
        a["receiver"],
        d.group_key(a),
        status,
        digest,
        False,
        ALERTS_PER_RECEIPT,
        0,
        None,
        "http://alertmanager.monitoring:9093",
        group_labels,
    )


def _notification(d: Dataset, a: dict[str, Any], rid: int, at: datetime, kind: str, conv: Any) -> tuple[Any, ...]:
    sent = at + timedelta(seconds=1)
    return (
        rid,
        "log",
        "unrouted",
        kind,
        d.group_key(a),
        rid,
        "sent",
        1,
        conv(at),
        None,
        None,
        None,
        json.dumps({"logged": True}),
        conv(at),
        conv(sent),
    )


COLUMNS = {
    "alerts": ALERT_COLUMNS,
    "alert_labels": ("alert_id", "name", "value"),
    "receipts": (
        "id",
        "received_at",
        "receiver",
        "group_key",
        "status",
        "digest",
        "duplicate",
        "alert_count",
        "truncated_alerts",
        "notification_reason",
        "external_url",
        "group_labels",
    ),
    "receipt_alerts": ("receipt_id", "alert_id"),
    "events": ("id", "alert_id", "receipt_id", "kind", "reason", "at"),
    "notifications": (
        "id",
        "channel",
        "recipient",
        "kind",
        "group_key",
        "receipt_id",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "reason",
        "provider_ref",
        "created_at",
        "sent_at",
    ),
    "notification_alerts": ("notification_id", "alert_id", "kind"),
}
# Parents first: receipts of a chunk may be referenced by the next chunk's rows and vice versa, so
# everything is loaded with foreign-key checks off (SQLite) or disabled triggers (PostgreSQL).
LOAD_ORDER = ("receipts", "alerts", "alert_labels", "receipt_alerts", "events", "notifications", "notification_alerts")


# -- loading ------------------------------------------------------------------------------------------


def populate_sqlite(path: Path, n: int, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    receiver_cli("db", "upgrade", database_url=f"sqlite:///{path}", workdir=workdir)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    db.execute("PRAGMA foreign_keys=OFF")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    # The label table is its primary key's B-tree (name, value, alert_id): its rows go to a plain table
    # first and are copied in key order at the end, as an index would be built after the load.
    db.execute("CREATE TABLE alert_labels_load (alert_id INTEGER, name TEXT, value TEXT)")
    d = Dataset(n)
    counts = dict.fromkeys(COLUMNS, 0)
    db.execute("BEGIN")
    for chunk in rows_in_chunks(d, as_text=True):
        for table in LOAD_ORDER:
            rows = chunk[table]
            marks = ",".join("?" * len(COLUMNS[table]))
            target = "alert_labels_load" if table == "alert_labels" else table
            db.executemany(f"INSERT INTO {target} ({','.join(COLUMNS[table])}) VALUES ({marks})", rows)
            counts[table] += len(rows)
    db.execute("COMMIT")
    loaded = time.monotonic() - started
    db.execute("PRAGMA temp_store=MEMORY")  # the sort of 7,000,000 rows, in memory instead of temp files
    db.execute(
        "INSERT INTO alert_labels (alert_id, name, value) SELECT alert_id, name, value FROM alert_labels_load"
        " ORDER BY name, value, alert_id"
    )
    db.execute("DROP TABLE alert_labels_load")
    for _, sql in indexes:
        db.execute(sql)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {
        "rows": counts,
        "load_s": loaded,
        "total_s": time.monotonic() - started,
        "db_mb": path.stat().st_size / 2**20,
    }


async def _populate_pg(url: str, n: int) -> dict[str, Any]:
    import asyncpg

    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = 'public' AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        # The label table's only index is its primary key: built after the load like the others.
        await conn.execute("ALTER TABLE alert_labels DROP CONSTRAINT pk_alert_labels")
        for table in COLUMNS:
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")  # FK checks; data is consistent
        d = Dataset(n)
        counts = dict.fromkeys(COLUMNS, 0)
        for chunk in rows_in_chunks(d, as_text=False):
            for table in LOAD_ORDER:
                rows = chunk[table]
                await conn.copy_records_to_table(table, records=rows, columns=list(COLUMNS[table]))
                counts[table] += len(rows)
        loaded = time.monotonic() - started
        for table in COLUMNS:
            await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
        for row in indexes:
            await conn.execute(row["indexdef"])
        await conn.execute(
            "ALTER TABLE alert_labels ADD CONSTRAINT pk_alert_labels PRIMARY KEY (name, value, alert_id)"
        )
        for table in ("alerts", "receipts", "events", "notifications"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        # A freshly bulk-loaded table has no statistics yet; autovacuum would gather them within a minute.
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {"rows": counts, "load_s": loaded, "total_s": time.monotonic() - started, "db_mb": size / 2**20}


def populate_postgres(url: str, n: int, workdir: Path) -> dict[str, Any]:
    receiver_cli("db", "upgrade", database_url=url, workdir=workdir)
    return asyncio.run(_populate_pg(url, n))


# -- the queries ---------------------------------------------------------------------------------------


def _cursor(last_id: int) -> str:
    from receiver.api.history import encode_cursor

    cursor = encode_cursor("a", last_id)
    assert cursor is not None
    return cursor


def cases(d: Dataset) -> list[dict[str, Any]]:
    """(name, kind, paths) for every timed query; paths rotate through a few values."""
    n = d.n
    now = d.now

    def q(**params: Any) -> str:
        items = [(k, v) for k, v in params.items() if not isinstance(v, list)]
        items += [(k, x) for k, v in params.items() if isinstance(v, list) for x in v]
        return "/api/v1/alerts?" + urlencode([*items, ("limit", 50)])

    iso = lambda t: t.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
    mid_day = now - timedelta(days=15)
    rng = random.Random(11)
    found = [
        ("first page, no filter", "list", [q()]),
        ("status=firing", "list", [q(status="firing")]),
        ("status=resolved", "list", [q(status="resolved")]),
        ("alertname (common)", "list", [q(alertname=name) for name in ALERTNAMES]),
        (f"alertname={RARE_NAME} ({len(range(5, n, 10_007))} rows)", "list", [q(alertname=RARE_NAME)]),
        ("severity=critical", "list", [q(severity="critical")]),
        ("model=model-NN", "list", [q(model=m) for m in MODELS[:10]]),
        ("team=team-N", "list", [q(team=t) for t in TEAMS]),
        ("receiver=…", "list", [q(receiver=r) for r in RECEIVERS]),
        ("since=24h ago", "list", [q(since=iso(now - timedelta(days=1)))]),
        ("since+until, 1 day 15 days ago", "list", [q(since=iso(mid_day), until=iso(mid_day + timedelta(days=1)))]),
        ('matcher namespace="ns-N"', "list", [q(matcher=[f'namespace="{ns}"']) for ns in NAMESPACES]),
        (
            f'matcher instance="{RARE_INSTANCE}" ({len(range(17, n, 50_000))} rows)',
            "list",
            [q(matcher=[f'instance="{RARE_INSTANCE}"'])],
        ),
        ('matcher severity!="info"', "list", [q(matcher=['severity!="info"'])]),
        ('matcher alertname=~"Model.*"', "list", [q(matcher=['alertname=~"Model.*"'])]),
        ('matcher instance=~"pod-12.*"', "list", [q(matcher=['instance=~"pod-12.*"'])]),
        ("deep cursor, no filter (id < 1,000)", "list", [q(cursor=_cursor(1000))]),
        ("deep cursor, no filter (id < N/2)", "list", [q(cursor=_cursor(n // 2))]),
        ("deep cursor, status=firing (id < 1,000)", "list", [q(status="firing", cursor=_cursor(1000))]),
        ("deep cursor, model=model-07 (id < N/2)", "list", [q(model="model-07", cursor=_cursor(n // 2))]),
        (
            'deep cursor, matcher namespace="ns-3" (id < 1,000)',
            "list",
            [q(matcher=['namespace="ns-3"'], cursor=_cursor(1000))],
        ),
        ("detail /api/v1/alerts/{id}", "detail", [f"/api/v1/alerts/{rng.randrange(1, n + 1)}" for _ in range(500)]),
    ]
    # Each deep page is compared with the first page of the same filter.
    pairs = {
        "deep cursor, no filter (id < 1,000)": "first page, no filter",
        "deep cursor, no filter (id < N/2)": "first page, no filter",
        "deep cursor, status=firing (id < 1,000)": "status=firing",
        "deep cursor, model=model-07 (id < N/2)": "model=model-NN",
        'deep cursor, matcher namespace="ns-3" (id < 1,000)': 'matcher namespace="ns-N"',
    }
    return [{"name": name, "kind": kind, "paths": paths, "pair": pairs.get(name)} for name, kind, paths in found]


def _get_json(base: str, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(base + path, timeout=120) as r:  # noqa: S310 (loopback)
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, None


def wait_idle(pid: int, *, min_age: float, idle_for: float = 1.5, timeout: float = 300) -> float:
    """Wait until the server has been up `min_age` s and used < 5 % CPU for `idle_for` s.

    Returns the CPU seconds it spent meanwhile (the receiver prunes retention 5 s after start)."""
    started = time.monotonic()
    first = server_cpu_seconds(pid)
    calm_since = None
    while time.monotonic() - started < timeout:
        before = server_cpu_seconds(pid)
        time.sleep(0.5)
        busy = (server_cpu_seconds(pid) - before) / 0.5
        now = time.monotonic()
        calm_since = (calm_since or now) if busy < 0.05 else None
        if now - started >= min_age and calm_since is not None and now - calm_since >= idle_for:
            break
    return server_cpu_seconds(pid) - first


def time_cases(cfg: BenchConfig, base: str, port: int, d: Dataset) -> list[dict[str, Any]]:
    results = []
    for case in cases(d):
        status, body = _get_json(base, case["paths"][0])
        items = len(body["items"]) if case["kind"] == "list" and body else (1 if body else 0)
        with tempfile.NamedTemporaryFile("w", suffix=".paths", dir=cfg.workdir, delete=False) as f:
            f.write("\n".join(case["paths"]))
        cmd = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "get",
            "--port",
            str(port),
            "--paths-file",
            f.name,
            "--requests",
            str(cfg.history_requests),
            "--duration",
            str(cfg.history_case_seconds),
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=cfg.history_case_seconds + 300
        )
        Path(f.name).unlink()
        if done.returncode != 0:
            raise RuntimeError(f"history load generator failed: {done.stderr[-2000:]}")
        r = json.loads(done.stdout)
        target = DETAIL_TARGET_MS if case["kind"] == "detail" else SUMMARY_TARGET_MS
        row = {
            "section": "history",
            "case": case["name"],
            "kind": case["kind"],
            "first_status": status,
            "items": items,
            "target_p99_ms": target,
            "met": r["p99_ms"] < target,
            "pair": case["pair"],
            **r,
        }
        results.append(row)
        cfg.log(row)
    return results


def explain(url: str, d: Dataset, slow: list[str]) -> dict[str, list[str]]:
    """The SQL the history API runs for each slow case, and the database's plan for it."""
    return asyncio.run(_explain(url, d, slow))


async def _explain(url: str, d: Dataset, slow: list[str]) -> dict[str, list[str]]:
    from urllib.parse import parse_qs, urlsplit

    from sqlalchemy import event

    from receiver.api.history import decode_cursor
    from receiver.matchers import parse_matcher
    from receiver.store import history as store
    from receiver.store.engine import create_engine

    engine = create_engine(url)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        captured.append((statement, params))

    plans: dict[str, list[str]] = {}
    try:
        for case in cases(d):
            if case["name"] not in slow or case["kind"] != "list":
                continue
            query = parse_qs(urlsplit(case["paths"][0]).query)
            one = {k: v[0] for k, v in query.items()}
            f = store.AlertFilter(
                status=one.get("status"),
                alertname=one.get("alertname"),
                severity=one.get("severity"),
                model=one.get("model"),
                team=one.get("team"),
                receiver=one.get("receiver"),
                since=datetime.fromisoformat(one["since"]) if "since" in one else None,
                until=datetime.fromisoformat(one["until"]) if "until" in one else None,
                matchers=[parse_matcher(m) for m in query.get("matcher", [])],
            )
            captured.clear()
            async with engine.connect() as conn:
                started = time.perf_counter()
                await store.list_alerts(conn, f, limit=50, before_id=decode_cursor("a", one.get("cursor")))
                elapsed = (time.perf_counter() - started) * 1000
                lines = [f"list_alerts in-process: {elapsed:.1f} ms, {len(captured)} statement(s)"]
                for statement, params in list(captured):
                    lines.append("SQL: " + " ".join(statement.split())[:600])
                    if engine.dialect.name == "sqlite":
                        plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                        lines += [f"  plan: {row[-1]}" for row in plan.all()]
                    else:
                        plan = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                        lines += [f"  plan: {row[0]}" for row in plan.all()]
            plans[case["name"]] = lines
    finally:
        await engine.dispose()
    return plans


_PRUNED = re.compile(r"pruned (\d+) alerts, (\d+) receipts")


def prune_half(url: str, workdir: Path) -> dict[str, Any]:
    """`alert-receiver db prune` with a retention of 15 days: the older half of the 30 days of history,
    deleted in batches of 1,000 with every row that refers to them. Seconds and what went."""
    started = time.monotonic()
    out = receiver_cli("db", "prune", database_url=url, workdir=workdir, timeout=1800, RECEIVER_RETENTION="15d")
    seconds = time.monotonic() - started
    found = _PRUNED.search(out)
    if found is None:
        raise RuntimeError(f"db prune printed no counts: {out[-500:]!r}")
    return {"seconds": seconds, "alerts": int(found.group(1)), "receipts": int(found.group(2))}


def run_history(cfg: BenchConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    d = Dataset(cfg.history_alerts)
    targets = ["sqlite"] + (["postgresql"] if cfg.history_postgres and cfg.pg_admin_url else [])
    for target in targets:
        if target == "sqlite":
            path = cfg.workdir / f"history-{cfg.history_alerts}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            ctx: Any = nullcontext(f"sqlite+aiosqlite:///{path}")
        else:
            ctx = pg.fresh_database(cfg.pg_admin_url, prefix="bench_history")  # type: ignore[arg-type]
        with ctx as url:
            cfg.log(f"history: populating {cfg.history_alerts:,} alerts in {target}")
            info = (
                populate_sqlite(path, d.n, cfg.workdir)
                if target == "sqlite"
                else populate_postgres(url, d.n, cfg.workdir)
            )
            cfg.log({"history_populated": target, **{k: v for k, v in info.items() if k != "rows"}, **info["rows"]})
            wait_quiet(cfg.quiet_threshold, cfg.quiet_wait)
            with receiver_server(cfg.workdir, url) as server:
                startup_cpu = wait_idle(server.pid, min_age=0 if cfg.quick else 6.5)
                cases_rows = time_cases(cfg, server.base, server.port, d)
                rss = server_memory(server.pid).get("VmHWM", 0) / 1024
            slow = [r["case"] for r in cases_rows if not r["met"]]
            plans = explain(url, d, slow) if slow else {}
            cfg.log(f"history: retention prune of the older half in {target}")
            info["prune"] = prune_half(url, cfg.workdir)
            for r in cases_rows:
                r["target"] = target
                r["alerts_stored"] = d.n
                if r["case"] in plans:
                    r["plan"] = plans[r["case"]]
            rows += cases_rows
            rows.append(
                {
                    "section": "history-setup",
                    "target": target,
                    "alerts": d.n,
                    **info,
                    "server_cpu_s_before_timing": startup_cpu,
                    "peak_rss_mb": rss,
                }
            )
            if target == "sqlite" and not cfg.keep_databases:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rows
