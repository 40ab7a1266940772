"""`python -m bench run --quick` completes and prints every row of its report (speed is not judged)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


@pytest.mark.slow
def test_quick_benchmark_prints_the_full_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--quick",
            "--silent",
            "--results-dir",
            str(tmp_path / "results"),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout

    for heading in (
        "## Ingest",
        "## Write path",
        "## History API",
        "## Dispatch",
        "## Memory",
        "## Storm",
        "## Targets",
    ):
        assert heading in out, f"missing section {heading!r}:\n{out}"
    # Ingest: baseline, SQLite and PostgreSQL (measured, or skipped with the reason) at 1, 10, 100 alerts.
    for target in ("baseline", "sqlite", "postgresql"):
        for size in (1, 10, 100):
            assert re.search(rf"^\| {target} +\| {size} +\| ", out, re.M), f"no ingest row {target}/{size}:\n{out}"
    for size in (1, 10, 100):  # the receiver with storage taken out: a ratio, nothing failed
        row = re.search(rf"^\| no storage +\| {size} +\|(.*)$", out, re.M)
        assert row and re.search(r"\|\s*\d+%\s*\|", row.group(1)), f"no ceiling row at {size}:\n{out}"
        assert row.group(1).split("|")[-3].strip() == "0", "requests to the storage-free receiver failed"
    for size in (1, 10, 100):
        row = re.search(rf"^\| sqlite +\| {size} +\|(.*)$", out, re.M)
        assert row and "skipped" not in row.group(1)
        assert re.search(r"\|\s*\d+%\s*\|", row.group(1)), "the SQLite row has no ratio to the baseline"
        assert row.group(1).rstrip(" |").endswith("yes"), "stored alerts fewer than acknowledged"
    # History: every query case, first page and deep cursors included, and the detail endpoint.
    for case in (
        "first page, no filter",
        "status=firing",
        "since=24h ago",
        'matcher namespace="ns-N"',
        'matcher alertname=~"Model.*"',
        "deep cursor, no filter",
        "detail /api/v1/alerts/{id}",
    ):
        assert re.search(rf"^\| sqlite +\| {re.escape(case)}", out, re.M), f"no history row {case!r}:\n{out}"
    # Retention after the timing: the older half of the 30 days of history (2,000 alerts) goes.
    pruned = re.search(r"retention deleted ([\d,]+) alerts and ([\d,]+) receipts", out)
    assert pruned, f"no retention figure:\n{out}"
    assert 900 <= int(pruned.group(1).replace(",", "")) <= 1100 and int(pruned.group(2).replace(",", "")) > 0
    assert re.search(r"^\| 30 +\| 10 +\| 30 +\| 30 +\|", out, re.M), f"dispatch did not send all 30:\n{out}"
    assert re.search(r"^\| 2,000 +\| 2,000 +\|", out, re.M), f"memory row missing:\n{out}"
    assert re.search(r"^\| 200 +\| 10 +\| 200 +\| 0 +\|", out, re.M) or "skipped: prometheus-alertmanager" in out
    for target in (
        "ingest SQLite",
        "ingest PostgreSQL",
        "webhook p99 < 100 ms",
        "webhook p99 < 250 ms",
        "every filter/matcher",
        "GET /alerts/{id}",
        "deep cursor page as fast",
        "dispatch ≥ 200",
        "RSS < 200 MB",
    ):
        assert target in out, f"targets table lacks {target!r}:\n{out}"
    assert "QUICK mode" in out
    assert list((tmp_path / "results").glob("*-quick.json"))
