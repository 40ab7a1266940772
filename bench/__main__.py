"""alert-receiver benchmark (issue #7).

    python -m bench run [--quick] [--only ingest,diagnose,history,dispatch,memory,storm,profile]

Starts the receiver (`python -m receiver serve` on a free port, fresh database, log level WARNING,
dispatcher off for ingest) and the parse-only baseline as real processes, drives them from a separate
load-generator process over loopback, and prints a markdown report: ingest table with the ratio to the
baseline, history API latencies over a directly populated database, dispatch rate against the Slack
fake, memory while ingesting, the Alertmanager storm, and which targets are met. The JSON of every
figure and the report go to bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import pg
from bench.common import REPO, commit_digest, machine_info, package_versions, snapshot_code, system_busy_seconds
from bench.settings import BenchConfig

SECTIONS = ("ingest", "diagnose", "history", "dispatch", "memory", "storm", "profile")
DEFAULT_FULL = ("ingest", "diagnose", "history", "dispatch", "memory", "storm")
DEFAULT_QUICK = ("ingest", "diagnose", "history", "dispatch", "memory", "storm")


def git_state() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "receiver", "templates").splitlines()]
    return f"git {commit}" + (
        f" + uncommitted changes in {len(dirty)} receiver/ file(s)" if dirty else " (clean receiver/)"
    )


def background_load(seconds: float = 2.0) -> str:
    before = system_busy_seconds()
    time.sleep(seconds)
    return f"{100 * (system_busy_seconds() - before) / seconds:.0f}% of one core busy over {seconds:.0f} s"


def _run_section(section: str, cfg: BenchConfig, results_dir: Path, *, quick: bool) -> Any:
    """One section's figures; each module is imported only when its section runs."""
    if section == "profile":
        from bench.profile import run_profile

        return run_profile(cfg, results_dir, seconds=3 if quick else 8)
    module, function = _SECTION_RUNNERS[section]
    return getattr(importlib.import_module(module), function)(cfg)


_SECTION_RUNNERS = {
    "ingest": ("bench.ingest", "run_ingest"),
    "diagnose": ("bench.ingest", "run_diagnosis"),
    "history": ("bench.history", "run_history"),
    "dispatch": ("bench.dispatch", "run_dispatch"),
    "memory": ("bench.ingest", "run_memory"),
    "storm": ("bench.storm", "run_storm"),
}


def run(args: argparse.Namespace) -> int:
    sections = (
        [s.strip() for s in args.only.split(",")] if args.only else list(DEFAULT_QUICK if args.quick else DEFAULT_FULL)
    )
    if args.profile and "profile" not in sections:
        sections.append("profile")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"bench: unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    t0 = time.monotonic()
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="alert-receiver-bench-", dir=args.workdir))
    git_at_start = git_state()
    code_digest = snapshot_code(workdir / "code")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {"keep_databases": args.keep, "verbose": not args.silent}
    if args.history_alerts:
        overrides["history_alerts"] = args.history_alerts
    if args.memory_alerts:
        overrides["memory_alerts"] = args.memory_alerts
    if args.seconds:
        overrides["ingest_seconds"] = args.seconds
    if args.quiet_wait is not None:
        overrides["quiet_wait"] = args.quiet_wait
    cfg = BenchConfig.quick_mode(workdir, **overrides) if args.quick else BenchConfig(workdir=workdir, **overrides)
    if args.no_history_postgres:
        cfg.history_postgres = False

    postgres_info: dict[str, str] = {}
    if args.no_postgres:
        cfg.pg_skip_reason = "--no-postgres"
    else:
        admin = pg.plain(args.postgres_url) if args.postgres_url else pg.admin_url_from_env()
        why = pg.reachable(admin)
        if why is None:
            cfg.pg_admin_url = admin
            postgres_info = pg.server_settings(admin)
        else:
            cfg.pg_skip_reason = f"PostgreSQL not reachable at {admin}: {why}"
            cfg.log(cfg.pg_skip_reason)

    results: dict[str, Any] = {
        "quick": args.quick,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "packages": package_versions(
            ["fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "aiosqlite", "asyncpg", "uvloop", "httptools"]
        ),
        "postgres": postgres_info,
        "git": f"{git_at_start}; servers run a copy taken at the start (sha256 {code_digest})",
        "concurrency": 16,
        "ingest_window": f"16 connections; {cfg.ingest_warmup:g} s warm-up + {cfg.ingest_seconds:g} s measured per "
        "row; fresh process and database per row; rows run in the order shown",
        "background": background_load(1.0 if args.quick else 3.0),
        "sections": {},
    }
    cfg.log(f"workdir {workdir}; sections {sections}; background {results['background']}")
    out = results["sections"]
    try:
        for section in sections:
            cfg.log(f"== {section}")
            out[section] = _run_section(section, cfg, results_dir, quick=args.quick)
    finally:
        results["duration_s"] = time.monotonic() - t0
        if git_state() != git_at_start:
            results["git"] += f"; NOTE receiver/ changed during the run (now {git_state()}), not measured here"
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        if head.returncode == 0 and commit_digest(head.stdout.strip()) == code_digest:
            results["git"] += f"; the copy is exactly commit {head.stdout.strip()}'s receiver/ and templates/"
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        mode = "quick" if args.quick else "full"
        (results_dir / f"{stamp}-{mode}.json").write_text(json.dumps(results, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    from bench.report import render

    report = render(results)
    (results_dir / f"latest-{mode}.md").write_text(report)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the benchmark and print the report")
    r.add_argument("--quick", action="store_true", help="seconds and tiny sizes, for CI smoke tests (no verdicts)")
    r.add_argument("--only", help=f"comma-separated sections out of {','.join(SECTIONS)}")
    r.add_argument("--profile", action="store_true", help="also profile the receiver with py-spy")
    r.add_argument(
        "--postgres-url",
        help="admin URL (default: $BENCH_POSTGRES_URL, $RECEIVER_TEST_POSTGRES_URL, "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    r.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL rows")
    r.add_argument("--no-history-postgres", action="store_true", help="history on SQLite only")
    r.add_argument("--history-alerts", type=int, help="stored alerts for the history benchmark (default 1,000,000)")
    r.add_argument("--memory-alerts", type=int, help="alerts ingested for the memory run (default 1,000,000)")
    r.add_argument("--seconds", type=float, help="measured seconds per ingest row (default 10)")
    r.add_argument("--quiet-wait", type=float, help="max seconds to wait for a quiet machine before each run")
    r.add_argument("--workdir", help="where temporary databases go (default: system temp dir)")
    r.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    r.add_argument("--keep", action="store_true", help="keep the work directory and databases")
    r.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
