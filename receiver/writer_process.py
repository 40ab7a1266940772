"""The group-commit writer in a process of its own (the default for `serve`).

One Python process runs one thread of Python at a time. With the writer as a thread of the serving
process, reading and preparing requests and running the write path's Python took turns on one core
while the second sat mostly idle (bench/: the server never passed ~95 % of one core). Here the
serving process reads, validates and prepares each webhook and hands the prepared receipt to a child
process, which runs the same `BatchWriter` (group commit, same transactions) and answers once the
receipt is committed; the request is answered only then, as before.

The two talk over a socketpair in frames: a 4-byte length, then a pickle of plain tuples (a receipt
as NamedTuples of plain values costs about a tenth of pickling the pydantic payload).
- parent -> child: first a `WriterConfig`, then `(request_id, receipt)` per webhook.
- child -> parent: first `READY`, then `(request_id, outcome)` or `(request_id, None, error)`.
The parent closing its end is the child's signal to commit what it holds, answer and exit; the child
ignores SIGINT and SIGTERM so that a Ctrl-C on the terminal cannot cut it off before the parent's
in-flight requests are answered. When the child dies, the requests it held get 503 (Alertmanager
retries them) and a new child is started.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receiver.store.ingest import IncomingAlert, IncomingReceipt, IngestOutcome, IngestPolicy
from receiver.writer import StorageUnavailable, local_writer

log = logging.getLogger(__name__)

READY = "ready"
_LENGTH = struct.Struct(">I")
START_TIMEOUT = 60.0  # seconds for the child to import, connect and say READY
RESTART_DELAY = 1.0  # seconds between a child's death and its replacement
EXIT_TIMEOUT = 10.0  # seconds for a child that closed its socket to exit before it is killed


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to build its writer; sent over the socket, never on a command line."""

    database_url: str
    sqlite_synchronous: str
    policy: IngestPolicy
    log_level: str
    log_format: str


# --- the wire: prepared receipts and outcomes as plain tuples -------------------------------------


def encode_receipt(receipt: IncomingReceipt) -> tuple[Any, ...]:
    return (*receipt[:-1], [tuple(item) for item in receipt.alerts])


def decode_receipt(wire: tuple[Any, ...]) -> IncomingReceipt:
    return IncomingReceipt(*wire[:-1], tuple(IncomingAlert(*item) for item in wire[-1]))


def encode_outcome(outcome: IngestOutcome) -> tuple[Any, ...]:
    return (outcome.receipt_id, outcome.duplicate, outcome.alert_ids, dict(outcome.events), outcome.notification_ids)


def decode_outcome(wire: tuple[Any, ...]) -> IngestOutcome:
    receipt_id, duplicate, alert_ids, events, notification_ids = wire
    return IngestOutcome(receipt_id, duplicate, alert_ids, Counter(events), notification_ids)


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or None when the other side closed its end (or died: connection reset)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        return pickle.loads(await reader.readexactly(_LENGTH.unpack(head)[0]))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _child_environment() -> dict[str, str]:
    """Our environment, with this very `receiver` package first on the child's path.

    `-P` keeps the working directory off the child's path (a `receiver/` directory wherever serve
    was started must not be what the child imports); PYTHONPATH points it at the package this process
    runs, whether installed, a source checkout or a copy.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


# --- the serving process's side --------------------------------------------------------------------


class ProcessWriter:
    """Same surface as BatchWriter (start, enqueue, incoming, stop, aclose); the commits run in a child."""

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[IngestOutcome]] = {}
        self._next_id = 0
        self._reader_task: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0  # children that died and were replaced (receiver_writer_restarts_total)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether a child takes receipts now (false while one is being restarted)."""
        return self._stream is not None and self._reader_task is not None and not self._reader_task.done()

    async def start(self) -> None:
        """Start the child and wait until its writer runs; StorageUnavailable if it cannot start."""
        parent_end, child_end = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "receiver.writer_process", "--fd", str(child_end.fileno()),
                pass_fds=(child_end.fileno(),), stdin=asyncio.subprocess.DEVNULL, env=_child_environment(),
            )  # fmt: skip
        finally:
            child_end.close()
        reader, self._stream = await asyncio.open_unix_connection(sock=parent_end)
        self._stream.write(_frame(self._config))
        try:
            hello = await asyncio.wait_for(_read_frame(reader), START_TIMEOUT)
        except TimeoutError:
            hello = None
        if hello != READY:
            await self._kill()
            raise StorageUnavailable(f"the writer process did not start (exit code {self._process.returncode})")
        self._reader_task = asyncio.create_task(self._read_answers(reader), name="writer-process-answers")
        log.info("writer process %s started", self._process.pid)

    def incoming(self) -> AbstractContextManager[None]:
        # The child batches whatever arrived while it committed the previous batch; nothing to wait for.
        return nullcontext()

    def enqueue(self, receipt: IncomingReceipt) -> asyncio.Future[IngestOutcome]:
        if not self.running:
            raise StorageUnavailable("the writer process is not running")
        self._next_id += 1
        done: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = done
        self._stream.write(_frame((self._next_id, encode_receipt(receipt))))
        return done

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await _read_frame(reader)) is not None:
                request_id, outcome, *error = message
                done = self._pending.pop(request_id, None)
                if done is None or done.done():  # the request went away; the commit stands
                    continue
                if outcome is None:
                    done.set_exception(StorageUnavailable(error[0]))
                else:
                    done.set_result(decode_outcome(outcome))
        finally:  # whatever ended the loop, no request may wait for an answer that cannot come
            await self._child_gone()

    async def _child_gone(self) -> None:
        assert self._process is not None
        if self._stream is not None:
            self._stream.close()
        try:
            code = await asyncio.wait_for(self._process.wait(), EXIT_TIMEOUT)
        except TimeoutError:  # it closed the socket but lives on: it can take no more receipts
            await self._kill()
            code = self._process.returncode
        lost = list(self._pending.values())
        self._pending.clear()
        for done in lost:
            if not done.done():
                done.set_exception(StorageUnavailable(f"the writer process exited (code {code})"))
        if self._stopping:
            return
        log.error("writer process %s exited with code %s; %d receipts unanswered; restarting it",
                  self._process.pid, code, len(lost))  # fmt: skip
        self._stream = None
        self.restarts += 1
        self._restarting = asyncio.create_task(self._restart(), name="writer-process-restart")

    async def _restart(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_DELAY)
            try:
                await self.start()
                return
            except (StorageUnavailable, OSError) as exc:
                log.error("restarting the writer process failed: %s; trying again", exc)

    async def stop(self) -> None:
        """Let the child commit and answer what it holds, then wait for it to exit."""
        self._stopping = True
        if self._restarting is not None:
            self._restarting.cancel()
        if self._stream is not None:
            self._stream.write_eof()
        if self._reader_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader_task), START_TIMEOUT)
            except TimeoutError:
                log.error("writer process did not finish in %.0f s; killing it", START_TIMEOUT)
                await self._kill()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def _kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def aclose(self) -> None:
        await self._kill()


# --- the child's side ---------------------------------------------------------------------------


async def _serve(sock: socket.socket) -> None:
    reader, stream = await asyncio.open_unix_connection(sock=sock)
    config = await _read_frame(reader)
    if not isinstance(config, WriterConfig):
        raise SystemExit(f"writer process: expected a WriterConfig first, got {type(config).__name__}")
    from receiver.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    writer, engine = local_writer(
        config.database_url, config.policy, config.sqlite_synchronous, gather_window=0.0, sqlite_in_thread=False
    )
    await writer.start()
    gc.collect()
    gc.freeze()  # as `serve` does: long-lived objects out of every full collection's way
    stream.write(_frame(READY))

    def answer(request_id: int, done: asyncio.Future[IngestOutcome]) -> None:
        error = StorageUnavailable("cancelled") if done.cancelled() else done.exception()
        message = (request_id, None, str(error)) if error else (request_id, encode_outcome(done.result()))
        stream.write(_frame(message))

    try:
        while (message := await _read_frame(reader)) is not None:
            request_id, wire = message
            try:
                committed = writer.enqueue(decode_receipt(wire))
            except StorageUnavailable as exc:
                stream.write(_frame((request_id, None, str(exc))))
                continue
            committed.add_done_callback(lambda done, rid=request_id: answer(rid, done))
    finally:
        await writer.stop()
        await writer.aclose()
        await engine.dispose()
        await asyncio.sleep(0)  # let the last answers' callbacks run
        await stream.drain()
        stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="alert-receiver's writer process (started by `serve`)")
    parser.add_argument("--fd", type=int, required=True, help="socket shared with the serving process")
    args = parser.parse_args(argv)
    # The serving process decides when this one stops (by closing the socket), so that requests it
    # has in flight are answered first; signals meant for the terminal's process group are ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    os.set_inheritable(args.fd, False)
    asyncio.run(_serve(sock))
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that what the parent pickles (receiver.writer_process
    # classes) is the same class here, not a copy living in __main__.
    from receiver.writer_process import main as module_main

    sys.exit(module_main())
