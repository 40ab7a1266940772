"""Sizes and durations of one benchmark run (full or --quick)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchConfig:
    workdir: Path
    quick: bool = False
    pg_admin_url: str | None = None
    pg_skip_reason: str = ""
    # ingest: each run is warm-up + measured seconds, on a fresh process and database
    ingest_seconds: float = 10.0
    ingest_warmup: float = 2.0
    ingest_max_requests: int = 500_000
    diagnose_seconds: float = 5.0
    # memory: alerts pushed through HTTP into one SQLite receiver, bounded in time
    memory_alerts: int = 1_000_000
    memory_seconds: float = 540.0
    # history
    history_alerts: int = 1_000_000
    history_requests: int = 200
    history_case_seconds: float = 30.0
    history_postgres: bool = True
    # dispatch
    dispatch_notifications: int = 5000
    dispatch_recipients: int = 500
    dispatch_timeout: float = 180.0
    # storm through Alertmanager
    storm_alerts: int = 10_000
    storm_groups: int = 100
    # the machine is shared: wait for it to calm down before each measured run (bounded)
    quiet_threshold: float = 30.0
    quiet_wait: float = 30.0
    keep_databases: bool = False
    verbose: bool = True
    log_sink: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))

    @classmethod
    def quick_mode(cls, workdir: Path, **kwargs: Any) -> BenchConfig:
        """Seconds, tiny sizes: for CI smoke tests. The figures mean nothing."""
        values: dict[str, Any] = dict(
            quick=True,
            ingest_seconds=1.0,
            ingest_warmup=0.2,
            ingest_max_requests=2000,
            diagnose_seconds=1.0,
            memory_alerts=2000,
            memory_seconds=10.0,
            history_alerts=2000,
            history_requests=5,
            history_case_seconds=5.0,
            history_postgres=False,
            dispatch_notifications=30,
            dispatch_recipients=10,
            dispatch_timeout=60.0,
            storm_alerts=200,
            storm_groups=10,
            quiet_wait=0.0,
        )
        values.update(kwargs)
        return cls(workdir=workdir, **values)

    def log(self, item: Any) -> None:
        if not self.verbose:
            return
        if isinstance(item, dict):
            shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in item.items() if k != "stats"}
            item = json.dumps(shown, default=str)
        self.log_sink(f"[bench] {item}")
