"""`alert-receiver serve` with storage taken out: the ceiling the serving process itself sets.

    python -m bench.nostore --port P [serve options]

Everything `serve` does runs as usual (HTTP, validation, enrichment, routing, the receipt digest,
the frames to and from the writer process, metrics, the answer), except that the writer's
transaction answers at once with made-up outcomes instead of touching the database. Its requests/s
over the parse-only baseline's say how much of the ingest ratio is lost before storage starts: no
storage engine, however fast, can lift the receiver above it. Nothing in receiver/ is changed: the
writer is replaced at import time, here and in the writer process (through its start-up lines).
Never point this at data you care about; it stores nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any


def install() -> None:
    from receiver.store.ingest import IngestOutcome
    from receiver.writer import BatchWriter

    next_id = [0]

    async def _transaction(self: BatchWriter, batch: list[Any]) -> list[IngestOutcome]:
        outcomes = []
        for job in batch:
            alerts = len(job.receipt.alerts)
            next_id[0] += 1
            outcomes.append(IngestOutcome(next_id[0], False, list(range(alerts)), Counter(firing=alerts), []))
        return outcomes

    BatchWriter._transaction = _transaction  # type: ignore[method-assign]


def _install_in_writer_process() -> None:
    """The writer process runs `writer_process._BOOTSTRAP`; have it install the same replacement first."""
    import receiver.writer_process as wp

    wp._BOOTSTRAP = "import bench.nostore; bench.nostore.install()\n" + wp._BOOTSTRAP


def main() -> int:
    install()
    _install_in_writer_process()
    from receiver.cli import main as receiver_main

    return receiver_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
