"""The load generator: its own process, loopback only, bounded in time and in count.

    python -m bench.loadgen webhook --port P --concurrency 16 --duration 10 --warmup 1 \
        --alerts 10 --run-id r1 [--max-requests N] [--server-pid PID]
    python -m bench.loadgen get --port P --paths-file paths.txt --requests 200 [--duration 20]

`webhook`: closed loop, `concurrency` keep-alive connections each sending the next unique payload as
soon as the previous answer arrives. Only requests that start after the warm-up and end inside the
measured window count towards rates and latencies. `get`: each path of the file (one per line) in
turn, sequentially. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from bench.common import (
    HttpError,
    RawConnection,
    cpu_seconds,
    get_request,
    percentile,
    post_request,
    postgres_cpu_seconds,
    server_cpu_seconds,
    system_busy_seconds,
)
from bench.payloads import PayloadFactory


def _latency_summary(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": (values[-1] * 1000) if values else float("nan"),
        "mean_ms": (sum(values) / len(values) * 1000) if values else float("nan"),
    }


async def run_webhook(args: argparse.Namespace) -> dict[str, Any]:
    factory = PayloadFactory(args.alerts, args.run_id)
    host = f"127.0.0.1:{args.port}"
    counter = iter(range(args.max_requests))
    started = time.perf_counter()
    window_start = started + args.warmup
    window_end = window_start + args.duration
    records: list[tuple[float, float, bool]] = []  # (start, end, ok) for every request
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    acked_total = 0  # alerts acknowledged with 200 over the whole run (warm-up included)
    cpu_marks: dict[str, tuple[float, ...]] = {}

    def mark(name: str) -> None:
        cpu_marks[name] = (
            time.perf_counter(),
            cpu_seconds(os.getpid()),
            server_cpu_seconds(args.server_pid) if args.server_pid else 0.0,
            system_busy_seconds(),
            postgres_cpu_seconds() if args.postgres else 0.0,
            cpu_seconds(args.server_pid) if args.server_pid else 0.0,  # the serving process alone
        )

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        mark("start")
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        mark("end")

    async def worker() -> None:
        nonlocal acked_total
        conn = RawConnection("127.0.0.1", args.port)
        try:
            for seq in counter:
                raw = post_request("/webhook", host, factory.body(seq))
                t0 = time.perf_counter()
                if t0 >= window_end:
                    break
                try:
                    status, body = await asyncio.wait_for(conn.request(raw), args.timeout)
                except (HttpError, TimeoutError) as exc:
                    await conn.close()
                    errors[type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)[:80]] += 1
                    records.append((t0, time.perf_counter(), False))
                    continue
                t1 = time.perf_counter()
                ok = status == 200 and b'"duplicate":true' not in body
                statuses[str(status)] += 1
                if ok:
                    acked_total += args.alerts
                records.append((t0, t1, ok))
        finally:
            await conn.close()

    marker = asyncio.create_task(mark_window())
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    finished = time.perf_counter()
    if "end" not in cpu_marks:  # stopped by --max-requests before the window ended
        marker.cancel()
        if "start" not in cpu_marks:
            mark("start")
        mark("end")
    t_start, client_cpu0, server_cpu0, system0, pg0, serving0 = cpu_marks["start"]
    t_end, client_cpu1, server_cpu1, system1, pg1, serving1 = cpu_marks["end"]
    window = max(min(t_end, finished) - t_start, 1e-9)
    client_pct = 100 * (client_cpu1 - client_cpu0) / window
    server_pct = 100 * (server_cpu1 - server_cpu0) / window
    serving_pct = 100 * (serving1 - serving0) / window
    postgres_pct = 100 * (pg1 - pg0) / window
    system_pct = 100 * (system1 - system0) / window
    inside = [(s, e, ok) for s, e, ok in records if s >= window_start and e <= window_end]
    ok_lat = [e - s for s, e, ok in inside if ok]
    n_ok = len(ok_lat)
    return {
        "mode": "webhook",
        "alerts_per_payload": args.alerts,
        "concurrency": args.concurrency,
        "window_s": window,
        "requests_ok": n_ok,
        "requests_failed": len(inside) - n_ok,
        "requests_per_s": n_ok / window,
        "alerts_per_s": n_ok * args.alerts / window,
        "acked_alerts_total": acked_total,
        "requests_total": len(records),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "client_cpu_pct": client_pct,
        "server_cpu_pct": server_pct,
        # The receiver's server is two processes: the one serving HTTP and its writer child.
        "serving_cpu_pct": serving_pct,
        "writer_cpu_pct": max(0.0, server_pct - serving_pct),
        "postgres_cpu_pct": postgres_pct,
        "system_cpu_pct": system_pct,
        # Everything else on the machine (other users, the orchestrator), in % of one core.
        "other_cpu_pct": max(0.0, system_pct - client_pct - server_pct - postgres_pct),
        **_latency_summary(ok_lat),
    }


async def run_get(args: argparse.Namespace, paths: list[str]) -> dict[str, Any]:
    host = f"127.0.0.1:{args.port}"
    conn = RawConnection("127.0.0.1", args.port)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    deadline = time.perf_counter() + args.duration
    try:
        for i in range(args.warmup):
            await conn.request(get_request(paths[i % len(paths)], host))
        for i in range(args.requests):
            if time.perf_counter() >= deadline:
                break
            raw = get_request(paths[i % len(paths)], host)
            t0 = time.perf_counter()
            status, _body = await asyncio.wait_for(conn.request(raw), args.timeout)
            latencies.append(time.perf_counter() - t0)
            statuses[str(status)] += 1
    finally:
        await conn.close()
    return {"mode": "get", "requests": len(latencies), "statuses": dict(statuses), **_latency_summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    hook = sub.add_parser("webhook")
    hook.add_argument("--port", type=int, required=True)
    hook.add_argument("--concurrency", type=int, default=16)
    hook.add_argument("--duration", type=float, default=10.0, help="measured seconds (after the warm-up)")
    hook.add_argument("--warmup", type=float, default=1.0)
    hook.add_argument("--alerts", type=int, default=10, help="alerts per payload")
    hook.add_argument("--max-requests", type=int, default=1_000_000, help="hard cap on requests sent")
    hook.add_argument("--run-id", default="r")
    hook.add_argument("--server-pid", type=int, default=0, help="report this process's CPU use in the window")
    hook.add_argument("--timeout", type=float, default=30.0)
    hook.add_argument("--postgres", action="store_true", help="also report the CPU use of postgres processes")
    get = sub.add_parser("get")
    get.add_argument("--port", type=int, required=True)
    get.add_argument("--paths-file", required=True)
    get.add_argument("--requests", type=int, default=200)
    get.add_argument("--warmup", type=int, default=3)
    get.add_argument("--duration", type=float, default=30.0, help="stop early after this many seconds")
    get.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.mode == "webhook":
        result = asyncio.run(run_webhook(args))
    else:
        with open(args.paths_file) as f:
            paths = [line.strip() for line in f if line.strip()]
        result = asyncio.run(run_get(args, paths))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
