"""The printed report: markdown tables (readable in a terminal, pasteable into docs) and the targets."""

from __future__ import annotations

import math
from typing import Any

TARGETS = {
    "ingest_sqlite_ratio": 0.50,
    "ingest_postgres_ratio": 0.40,
    "p99_ms_10": 100.0,
    "p99_ms_100": 250.0,
    "dispatch_per_s": 200.0,
    "rss_mb": 200.0,
    "storm_s": 10.0,
}


def _f(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def ingest_table(rows: list[dict[str, Any]]) -> list[str]:
    headers = [
        "target",
        "alerts/payload",
        "req/s",
        "alerts/s",
        "p50 ms",
        "p99 ms",
        "ratio",
        "peak RSS MB",
        "server+writer CPU %",
        "writer CPU %",
        "loadgen CPU %",
        "postgres CPU %",
        "other CPU %",
        "failed",
        "stored ≥ acked",
    ]
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([r["target"], str(r["alerts_per_payload"]), f"skipped: {r['skipped'][:60]}", *[""] * 12])
            continue
        body.append(
            [
                r["target"],
                str(r["alerts_per_payload"]),
                _f(r["requests_per_s"]),
                _f(r["alerts_per_s"]),
                _f(r["p50_ms"], 1),
                _f(r["p99_ms"], 1),
                f"{100 * r['ratio']:.0f}%" if "ratio" in r else "–",
                _f(r["peak_rss_mb"]),
                _f(r["server_cpu_pct"]),
                _f(r["writer_cpu_pct"]) if r["target"] != "baseline" else "–",
                _f(r["client_cpu_pct"]),
                _f(r["postgres_cpu_pct"]) if r["target"] == "postgresql" else "–",
                _f(r["other_cpu_pct"]),
                _f(r["requests_failed"]),
                _f(r.get("durable_ok")) if "durable_ok" in r else "–",
            ]
        )
    return table(headers, body)


def _goal(target: str) -> float:
    return TARGETS["ingest_postgres_ratio"] if target == "postgresql" else TARGETS["ingest_sqlite_ratio"]


def _cpu_per_request(r: dict[str, Any]) -> dict[str, float]:
    """µs of one core per answered request, per process (% of a core ÷ requests/s)."""
    return {
        name: 1e4 * r[f"{name}_cpu_pct"] / r["requests_per_s"] for name in ("serving", "writer", "postgres", "client")
    }


def _rate_at_goal(r: dict[str, Any], goal: float) -> float:
    """Requests/s the row would need for `goal` (its ratio is its requests/s over the baseline's)."""
    return goal * r["requests_per_s"] / r["ratio"]


def cpu_budget_table(rows: list[dict[str, Any]], cores: int) -> list[str]:
    """CPU per request of each process, from the ingest rows, and what the ratio target would take.

    At the target ratio the receiver answers goal × the baseline's requests/s. The serving process
    runs one event loop and SQLite's writer one transaction at a time, so each can use one core at
    most; all processes together share the machine's cores with the load generator.
    """
    headers = [
        "target",
        "alerts/payload",
        "serving µs/req",
        "writer µs/req",
        "postgres µs/req",
        "loadgen µs/req",
        "target ratio",
        "req/s at target",
        "serving cores at target",
        "writer cores at target",
        f"all cores at target (machine: {cores})",
    ]
    body = []
    for r in rows:
        if r["target"] == "baseline" or "skipped" in r or "ratio" not in r or not r["requests_per_s"]:
            continue
        per_request = _cpu_per_request(r)
        goal = _goal(r["target"])
        rate = _rate_at_goal(r, goal)
        body.append(
            [
                r["target"],
                str(r["alerts_per_payload"]),
                *(_f(per_request[name]) for name in ("serving", "writer")),
                _f(per_request["postgres"]) if r["target"] == "postgresql" else "–",
                _f(per_request["client"]),
                f"{goal:.0%}",
                _f(rate),
                _f(rate * per_request["serving"] / 1e6, 2),
                _f(rate * per_request["writer"] / 1e6, 2),
                _f(rate * sum(per_request.values()) / 1e6, 2),
            ]
        )
    return table(headers, body)


def _cores_note(r: dict[str, Any], goal: float) -> str:
    """'; at the goal: N cores' from the row's CPU per request (see cpu_budget_table)."""
    if "serving_cpu_pct" not in r or not r["requests_per_s"]:
        return ""
    cores = _rate_at_goal(r, goal) * sum(_cpu_per_request(r).values()) / 1e6
    return f"; at {goal:.0%} this CPU per request would need {cores:.1f} cores"


def _prune_note(prune: dict[str, Any] | None) -> str:
    if not prune:
        return ""
    return (
        f"; after timing, `db prune` with a 15-day retention deleted {prune['alerts']:,} alerts and"
        f" {prune['receipts']:,} receipts in {prune['seconds']:.1f} s"
    )


def history_table(rows: list[dict[str, Any]]) -> list[str]:
    headers = ["db", "query (limit=50)", "items", "n", "p50 ms", "p99 ms", "max ms", "target p99", "met"]
    body = [
        [
            r["target"],
            r["case"],
            str(r["items"]),
            str(r["requests"]),
            _f(r["p50_ms"], 1),
            _f(r["p99_ms"], 1),
            _f(r["max_ms"], 1),
            f"< {r['target_p99_ms']:.0f} ms",
            _f(r["met"]),
        ]
        for r in rows
        if r["section"] == "history"
    ]
    return table(headers, body)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    mode = "QUICK mode: sizes are tiny, figures mean nothing" if results["quick"] else "full"
    out.append(f"# alert-receiver benchmark ({mode})")
    out.append("")
    out.append(f"- when: {results['started']} (took {results['duration_s']:.0f} s)")
    out.append(
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, kernel {m['kernel']}; "
        f"Python {m['python']}, SQLite {m['sqlite']}"
    )
    out.append(f"- packages: {', '.join(f'{k} {v}' for k, v in results['packages'].items())}")
    if results.get("postgres"):
        out.append(f"- PostgreSQL: {', '.join(f'{k}={v}' for k, v in results['postgres'].items())} (same machine)")
    out.append(f"- code: {results['git']}")
    out.append(
        f"- load generator: bench/loadgen.py in its own process, {results['concurrency']} keep-alive connections, "
        "closed loop, loopback only, unique alerts in every payload. The machine has "
        f"{m['nproc']} cores shared by the server, the load generator and PostgreSQL: 'other CPU %' is what "
        "everything else on the machine used during the measured window (100 % = one core)."
    )
    if results.get("background"):
        out.append(f"- background load before the run: {results['background']}")
    sections = results["sections"]
    if "ingest" in sections:
        out += ["", f"## Ingest ({results['ingest_window']})", ""]
        out += ingest_table(sections["ingest"])
        if any("serving_cpu_pct" in r for r in sections["ingest"]):
            out += ["", "### CPU per request, and what the ratio targets would take", ""]
            out += cpu_budget_table([r for r in sections["ingest"] if "serving_cpu_pct" in r], m["nproc"])
    if "diagnose" in sections:
        out += ["", "## Write path, instrumented (bench/diagnose.py; not the measured servers)", ""]
        for d in sections["diagnose"]:
            s = d["stats"]
            if d.get("dispatch"):
                sent = max(d["notifications"], 1)
                per = {k: c / sent for k, c in s["statements_total"].items() if c / sent >= 0.05}
                hops = sum(s["hops_total"].values()) / sent
                out.append(
                    f"- dispatch, sqlite, {d['notifications']} notifications ({_f(d['notifications_per_s'])}/s "
                    f"instrumented): per notification {sum(per.values()):.1f} SQL statements "
                    f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(per.items(), key=lambda kv: -kv[1]))}); "
                    f"{hops:.1f} aiosqlite thread hops, {1000 * s['hop_wait_total_s'] / sent:.1f} ms waited for them "
                    f"of which {1000 * s['hop_thread_total_s'] / sent:.1f} ms ran in SQLite threads"
                )
                continue
            stmts = s["statements_per_receipt"]
            per_receipt = sum(
                v["per_receipt"] for k, v in stmts.items() if k.split()[0] in ("INSERT", "UPDATE", "SELECT")
            )
            hops = sum(v["per_receipt"] for v in s.get("sqlite_hops_per_receipt", {}).values())
            out.append(
                f"- {d['target']}, {d['alerts_per_payload']} alerts/payload: {_f(d['requests_per_s'])} req/s; "
                f"{s['receipts_per_transaction']:.1f} receipts per transaction (batch sizes {s['batch_sizes']}), "
                f"transaction {s['transaction_mean_ms']:.1f} ms mean / {s['transaction_max_ms']:.0f} ms max; "
                f"writer busy {s['writer_busy_s']:.1f} s; {per_receipt:.1f} SQL statements per receipt"
                + (f"; {hops:.1f} aiosqlite thread hops per receipt" if hops else "")
            )
    if "history" in sections:
        setups = [r for r in sections["history"] if r["section"] == "history-setup"]
        out += ["", "## History API (sequential requests, one connection)", ""]
        for s in setups:
            rows = s["rows"]
            out.append(
                f"- {s['target']}: {s['alerts']:,} alerts, {rows['alert_labels']:,} label rows, "
                f"{rows['events']:,} events, {rows['receipts']:,} receipts; populated in {s['total_s']:.0f} s; "
                f"{s['db_mb']:.0f} MB; server CPU before timing (start-up, retention prune): "
                f"{s['server_cpu_s_before_timing']:.1f} s; server peak RSS {s['peak_rss_mb']:.0f} MB"
                + _prune_note(s.get("prune"))
            )
        out.append("")
        out += history_table(sections["history"])
    if "dispatch" in sections:
        d = sections["dispatch"]
        out += ["", "## Dispatch (Slack fake, slack_channel_interval 0s)", ""]
        if "skipped" in d:
            out.append(f"skipped: {d['skipped']}")
        else:
            out += table(
                [
                    "notifications",
                    "recipients",
                    "sent",
                    "posted",
                    "notifications/s (sent_at span)",
                    "wall s",
                    "peak RSS MB",
                    "target",
                    "met",
                ],
                [
                    [
                        str(d["notifications"]),
                        str(d["recipients"]),
                        str(d["sent"]),
                        str(d["posted_messages"]),
                        _f(d["notifications_per_s"]),
                        _f(d["wall_s"], 1),
                        _f(d["peak_rss_mb"]),
                        "≥ 200/s",
                        _f(d["met"]),
                    ]
                ],
            )
    if "memory" in sections:
        r = sections["memory"]
        out += ["", "## Memory (SQLite, 100 alerts/payload, 16 connections)", ""]
        at = r["rss_mb_at"]
        out += table(
            [
                "alerts acked",
                "stored",
                "seconds",
                "alerts/s",
                "p99 ms",
                "RSS MB at 10/50/90 %/end",
                "peak RSS MB",
                "DB MB",
                "target",
                "met",
            ],
            [
                [
                    f"{r['alerts_acked']:,}",
                    f"{r['stored_alerts']:,}",
                    _f(r["seconds"]),
                    _f(r["alerts_per_s"]),
                    _f(r["p99_ms"], 1),
                    " / ".join(_f(at[k]) for k in ("10%", "50%", "90%", "end")),
                    _f(r["peak_rss_mb"]),
                    _f(r["db_mb"]),
                    f"< 200 MB over {r['alerts_goal']:,}",
                    _f(r["met"]),
                ]
            ],
        )
    if "storm" in sections:
        s = sections["storm"]
        out += ["", "## Storm through Alertmanager 0.25", ""]
        if "skipped" in s:
            out.append(f"skipped: {s['skipped']}")
        else:
            out += table(
                [
                    "alerts",
                    "groups",
                    "stored",
                    "receipts w/o notification",
                    "s from first send",
                    "AM sends",
                    "AM failed",
                    "target",
                    "met",
                ],
                [
                    [
                        f"{s['alerts']:,}",
                        str(s["groups"]),
                        f"{s['alerts_stored']:,}",
                        str(s["receipts_without_notification"]),
                        _f(s["seconds_from_first_send"], 2),
                        _f(s["am_webhook_sends"]),
                        _f(s["am_webhook_failed"] + s["am_webhook_requests_failed"]),
                        "≤ 10 s, 0 failed",
                        _f(s["met"]),
                    ]
                ],
            )
    if "profile" in sections:
        out += [
            "",
            "## Profiles (py-spy --threads, 100 Hz, 10 alerts/payload, separate runs)",
            "",
        ]
        for p in sections["profile"]:
            if "skipped" in p:
                out.append(f"- {p.get('target', '')}: skipped: {p['skipped']}")
                continue
            out.append(f"- {p['target']}: {p['samples']} samples, raw stacks in {p['raw']}")
            out.append(
                "  - threads (share of samples): " + "; ".join(f"{pct} {name}" for pct, name in p["threads"][:4])
            )
            out.append(f"  - event-loop thread waiting in epoll: {p['main_thread_in_epoll_pct']:.0f}% of its samples")
            out.append("  - event-loop thread, own time: " + "; ".join(f"{pct} {name}" for pct, name in p["own"][:8]))
            out.append(
                "  - event-loop thread, inclusive in receiver/: "
                + "; ".join(f"{pct} {name}" for pct, name in p["receiver_inclusive"][:10])
            )
    out += ["", "## Targets (issue #7)", ""]
    out += table(["target", "measured", "met"], [[t, m, ok] for t, m, ok in targets(results)])
    if results["quick"]:
        out += ["", "Quick mode: the sizes are tiny, so 'met' means nothing here."]
    return "\n".join(out) + "\n"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    s = results["sections"]
    found: list[tuple[str, str, str]] = []

    def ingest(target: str, size: int) -> dict[str, Any] | None:
        for r in s.get("ingest", []):
            if r["target"] == target and r["alerts_per_payload"] == size and "skipped" not in r:
                return r
        return None

    for target, goal, label in (
        ("sqlite", TARGETS["ingest_sqlite_ratio"], "SQLite"),
        ("postgresql", TARGETS["ingest_postgres_ratio"], "PostgreSQL"),
    ):
        r = ingest(target, 10)
        others = ", ".join(
            f"{size}/payload {100 * x['ratio']:.0f}%"
            for size in (1, 100)
            if (x := ingest(target, size)) and "ratio" in x
        )
        if r and "ratio" in r:
            found.append(
                (
                    f"ingest {label}, 10/payload: durable alerts/s ≥ {goal:.0%} of parse-only",
                    f"{100 * r['ratio']:.0f}% ({_f(r['alerts_per_s'])} vs baseline); {others}{_cores_note(r, goal)}",
                    _f(r["ratio"] >= goal),
                )
            )
        else:
            found.append((f"ingest {label} ratio ≥ {goal:.0%}", "not measured", "–"))
    for size, goal in ((10, TARGETS["p99_ms_10"]), (100, TARGETS["p99_ms_100"])):
        parts, oks = [], []
        for target in ("sqlite", "postgresql"):
            r = ingest(target, size)
            if r:
                parts.append(f"{target} {r['p99_ms']:.0f} ms")
                oks.append(r["p99_ms"] < goal)
        found.append(
            (
                f"webhook p99 < {goal:.0f} ms at {size}/payload",
                ", ".join(parts) or "not measured",
                _f(all(oks)) if oks else "–",
            )
        )
    hist = [r for r in s.get("history", []) if r["section"] == "history"]
    for target in ("sqlite", "postgresql"):
        rows = [r for r in hist if r["target"] == target]
        if not rows:
            continue
        n = next((x["alerts"] for x in s["history"] if x["section"] == "history-setup" and x["target"] == target), 0)
        lists = [r for r in rows if r["kind"] == "list" and not r["case"].startswith("deep")]
        bad = [f"{r['case']} {r['p99_ms']:.0f} ms" for r in lists if not r["met"]]
        found.append(
            (
                f"history {target} ({n:,} alerts): every filter/matcher p99 < 50 ms",
                f"{len(lists) - len(bad)}/{len(lists)} cases" + (f"; over: {'; '.join(bad)}" if bad else ""),
                _f(not bad),
            )
        )
        detail = next((r for r in rows if r["kind"] == "detail"), None)
        if detail:
            found.append(
                (f"history {target}: GET /alerts/{{id}} p99 < 20 ms", f"{detail['p99_ms']:.1f} ms", _f(detail["met"]))
            )
        by_case = {r["case"]: r for r in rows}
        deep = [r for r in rows if r.get("pair") in by_case]
        if deep:
            # Medians: p99 of 200 sequential requests on a shared 2-core machine is mostly noise.
            parts, slow = [], []
            for r in deep:
                first = by_case[r["pair"]]
                parts.append(f"{r['case'].removeprefix('deep cursor, ')}: {r['p50_ms']:.1f} vs {first['p50_ms']:.1f}")
                if r["p50_ms"] > 1.5 * first["p50_ms"] + 1 or not r["met"]:
                    slow.append(r["case"])
            found.append((
                f"history {target}: deep cursor page as fast as that filter's first page (p50 ≤ 1.5× + 1 ms)",
                "p50 ms deep vs first: " + "; ".join(parts), _f(not slow),
            ))  # fmt: skip
    d = s.get("dispatch")
    if d and "skipped" not in d:
        found.append(
            (
                "dispatch ≥ 200 notifications/s",
                f"{_f(d['notifications_per_s'])}/s ({d['sent']}/{d['notifications']} sent)",
                _f(d["met"]),
            )
        )
    storm = s.get("storm")
    if storm and "skipped" not in storm:
        found.append(
            (
                "storm: 10,000 alerts / 100 groups stored + queued ≤ 10 s, 0 failed sends",
                f"{storm['alerts_stored']:,}/{storm['alerts']:,} in {_f(storm['seconds_from_first_send'], 1)} s, "
                f"{_f(storm['am_webhook_failed'] + storm['am_webhook_requests_failed'])} failed",
                _f(storm["met"]),
            )
        )
    mem = s.get("memory")
    if mem:
        found.append(
            (
                f"RSS < 200 MB while ingesting {mem['alerts_goal']:,} alerts",
                f"peak {mem['peak_rss_mb']:.0f} MB over {mem['stored_alerts']:,} alerts",
                _f(mem["met"]),
            )
        )
    return found
