"""A py-spy profile of the receiver under ingest load (optional: `pip install py-spy`).

Samples every thread of the server process; the raw collapsed stacks go to the results directory,
and a summary (busiest threads, top frames by own and by inclusive samples) goes into the report.
py-spy costs CPU on a 2-core machine, so profiled runs are separate from the measured ones.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench import pg
from bench.common import REPO, clean_env, receiver_server
from bench.ingest import loadgen_command
from bench.settings import BenchConfig


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None
    )


def summarize(raw: Path, top: int = 12) -> dict[str, Any]:
    """Thread shares, how often the event loop thread sat in epoll (waiting), where its time went."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = main_total = main_idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        thread = frames[0].split(":", 1)[-1].strip()
        threads[thread] += n
        if thread != "MainThread":
            continue
        main_total += n
        if "EpollSelector.select" in frames[-1]:
            main_idle += n
            continue
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            if "receiver/" in frame and "receiver/__main__" not in frame and "receiver/cli.py" not in frame:
                inclusive[frame] += n

    def pct(c: Counter[str]) -> list[tuple[str, str]]:
        return [(f"{100 * k / max(main_total, 1):.1f}%", name) for name, k in c.most_common(top)]

    return {
        "samples": total,
        "threads": [(f"{100 * k / max(total, 1):.1f}%", name) for name, k in threads.most_common()],
        "main_thread_in_epoll_pct": 100 * main_idle / max(main_total, 1),
        "own": pct(own),
        "receiver_inclusive": pct(inclusive),
    }


def run_profile(cfg: BenchConfig, results_dir: Path, alerts: int = 10, seconds: float = 8.0) -> list[dict[str, Any]]:
    tool = py_spy()
    if tool is None:
        return [{"section": "profile", "skipped": "py-spy is not installed (pip install py-spy)"}]
    found = []
    targets = ["sqlite"] + (["postgresql"] if cfg.pg_admin_url else [])
    for target in targets:
        db_ctx: Any
        if target == "sqlite":
            db_ctx = nullcontext(f"sqlite+aiosqlite:///{cfg.workdir / f'profile-{uuid.uuid4().hex[:6]}.db'}")
        else:
            db_ctx = pg.fresh_database(cfg.pg_admin_url)  # type: ignore[arg-type]
        raw = results_dir / f"profile-{target}-{alerts}.txt"
        with db_ctx as url, receiver_server(cfg.workdir, url) as server:
            cmd = loadgen_command(server.port, alerts=alerts, duration=seconds + 3, warmup=1)
            load = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL)
            time.sleep(2)
            spy = subprocess.run(
                [
                    tool,
                    "record",
                    "-p",
                    str(server.pid),
                    "-d",
                    str(int(seconds)),
                    "-r",
                    "100",
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--threads",
                    "--nonblocking",
                ],
                capture_output=True,
                text=True,
            )
            load.wait(timeout=seconds + 120)
        if spy.returncode != 0 or not raw.exists():
            found.append({"section": "profile", "target": target, "skipped": f"py-spy failed: {spy.stderr[-500:]}"})
            continue
        found.append(
            {"section": "profile", "target": target, "alerts_per_payload": alerts, "raw": str(raw), **summarize(raw)}
        )
    return found
