"""The group-commit writer in a process of its own (the default for `serve`).

One Python process runs one thread of Python at a time. With the writer as a thread of the serving
process, reading and preparing requests and running the write path's Python took turns on one core
while the second sat mostly idle (bench/: the server never passed ~95 % of one core). Here the
serving process reads, validates and prepares each webhook and hands the prepared receipt to a child
process, which runs the same `BatchWriter` (group commit, same transactions) and answers once the
receipt is committed; the request is answered only then, as before.

The two talk over a socketpair in frames: a 4-byte length, then a pickle of plain tuples (a receipt
as NamedTuples of plain values costs about a quarter of pickling the pydantic payload).
- parent -> child: first `(PROTOCOL, WriterConfig)` (the child refuses a layout it does not share),
  then `(request_id, receipt)` per webhook.
- child -> parent: first `READY`, then `(request_id, outcome)` or `(request_id, None, error)`.
The parent closing its end is the child's signal to commit what it holds, answer and exit; the child
ignores SIGINT and SIGTERM so that a Ctrl-C on the terminal cannot cut it off before the parent's
in-flight requests are answered. When the child dies, the requests it held get 503 (Alertmanager
retries them) and a new child is started. A child that lives on but stops answering (a hung disk or
database connection, a stopped process) is killed after `WriterConfig.stall_timeout` without a single answer while
receipts wait, and handled the same way: otherwise every webhook would wait until Alertmanager gives
up on it, and the server would never say it cannot store.
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
STALL_TIMEOUT = 30.0  # default seconds without an answer, while receipts wait, before the child is killed


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to build its writer; sent over the socket, never on a command line."""

    database_url: str
    sqlite_synchronous: str
    policy: IngestPolicy
    log_level: str
    log_format: str
    stall_timeout: float = STALL_TIMEOUT  # also the database's statement_timeout on PostgreSQL


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


# --- the serving process's side ----------------------------------------------------------------

# The child's first lines: import the very `receiver` package this process runs. `-P` keeps the
# working directory off the child's path (a stray `receiver/` wherever serve was started must not be
# what commits webhooks); the package's directory is added only when the interpreter would not find
# it anyway (a source checkout run with `python -m`), so site-packages never lands before the stdlib.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; root = sys.argv.pop(1)\n"
    "if root not in sys.path: sys.path.insert(0, root)\n"
    "from receiver.writer_process import main; sys.exit(main())"
)
# Both sides must agree on the tuples' layout; a child started after an upgrade on disk may not.
PROTOCOL = "|".join([*IncomingReceipt._fields, *IncomingAlert._fields, *IngestOutcome.__dataclass_fields__])


class ProcessWriter:
    """Same surface as BatchWriter (start, enqueue, incoming, stop, aclose); the commits run in a child."""

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
        self._quiet_since = 0.0  # loop time of the child's last answer, or of the first receipt after none waited
        self._watchdog: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[IngestOutcome]] = {}
        self._next_id = 0
        self._reader_task: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0  # children that died and were replaced (receiver_writer_restarts_total)
        self.stalls = 0  # children killed for not answering (receiver_writer_stalls_total)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether a child takes receipts now (false while one is restarted, and once stopping)."""
        return (
            not self._stopping
            and self._stream is not None
            and self._reader_task is not None
            and not self._reader_task.done()
        )

    async def start(self) -> None:
        """Start the child and wait until its writer runs; StorageUnavailable if it cannot start."""
        parent_end, child_end = socket.socketpair()
        stream: asyncio.StreamWriter | None = None
        try:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-c", _BOOTSTRAP, _PACKAGE_ROOT, "--fd", str(child_end.fileno()),
                    pass_fds=(child_end.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            finally:
                child_end.close()
            reader, stream = await asyncio.open_unix_connection(sock=parent_end)
            stream.write(_frame((PROTOCOL, self._config)))
            try:
                hello = await asyncio.wait_for(_read_frame(reader), START_TIMEOUT)
            except TimeoutError:
                hello = None
            if hello != READY:
                code = await self._reap(grace=1.0)
                raise StorageUnavailable(f"the writer process did not start (exit code {code})")
        except BaseException:  # failed or cancelled (stop() during a restart): leave nothing behind
            if stream is not None:
                stream.close()
            parent_end.close()
            await self._reap(grace=0.0)
            raise
        self._stream = stream
        self._reader_task = asyncio.create_task(self._read_answers(reader), name="writer-process-answers")
        self._watchdog = asyncio.create_task(self._watch(self._process), name="writer-process-watchdog")
        log.info("writer process %s started", self._process.pid)

    def incoming(self) -> AbstractContextManager[None]:
        # The child batches whatever arrived while it committed the previous batch; nothing to wait for.
        return nullcontext()

    def enqueue(self, receipt: IncomingReceipt) -> asyncio.Future[IngestOutcome]:
        if not self.running:
            raise StorageUnavailable("the writer process is not running")
        assert self._stream is not None
        frame = _frame((self._next_id + 1, encode_receipt(receipt)))
        try:
            self._stream.write(frame)
        except (RuntimeError, ConnectionError) as exc:  # the transport is closing: the child is going
            raise StorageUnavailable(f"the writer process is not reachable: {exc}") from None
        self._next_id += 1
        if not self._pending:  # the stall clock starts with the first receipt waiting for an answer
            self._quiet_since = asyncio.get_running_loop().time()
        done: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = done
        return done

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await _read_frame(reader)) is not None:
                request_id, outcome, *error = message
                self._quiet_since = asyncio.get_running_loop().time()
                done = self._pending.pop(request_id, None)
                if done is None or done.done():  # the request went away; the commit stands
                    continue
                if outcome is None:
                    done.set_exception(StorageUnavailable(error[0]))
                else:
                    done.set_result(decode_outcome(outcome))
        finally:  # whatever ended the loop, no request may wait for an answer that cannot come
            await self._child_gone()

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """Kill `process` once receipts have waited `stall_timeout` with no answer from it at all.

        The clock runs only while receipts wait, and any answer resets it: a child that is slow but
        committing is left alone. Killing it ends the reader, which answers 503 and starts a new child.
        """
        loop = asyncio.get_running_loop()
        while process.returncode is None:
            await asyncio.sleep(min(1.0, self._config.stall_timeout / 4))
            silent = loop.time() - self._quiet_since
            if self._pending and silent >= self._config.stall_timeout and process.returncode is None:
                log.error("writer process %s answered nothing for %.0f s while %d receipts waited; killing it",
                          process.pid, silent, len(self._pending))  # fmt: skip
                self.stalls += 1
                process.kill()
                return

    async def _child_gone(self) -> None:
        assert self._process is not None
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._stream is not None:
            self._stream.close()
            self._stream = None  # from here on enqueue refuses at once (503)
        code = await self._reap(grace=EXIT_TIMEOUT)  # a child that closed its socket but lives on is killed
        lost = list(self._pending.values())
        self._pending.clear()
        for done in lost:
            if not done.done():
                done.set_exception(StorageUnavailable(f"the writer process exited (code {code})"))
        if self._stopping:
            return
        log.error("writer process %s exited with code %s; %d receipts unanswered; restarting it",
                  self._process.pid, code, len(lost))  # fmt: skip
        self.restarts += 1
        self._restarting = asyncio.create_task(self._restart(), name="writer-process-restart")

    async def _restart(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_DELAY)
            try:
                await self.start()
                return
            except Exception as exc:  # keep trying: without a writer every webhook gets 503
                log.error("restarting the writer process failed: %s; trying again", exc)

    async def stop(self) -> None:
        """Let the child commit and answer what it holds, then wait for it to exit."""
        self._stopping = True
        if self._restarting is not None:  # a child being started now is killed by start() itself
            self._restarting.cancel()
            await asyncio.gather(self._restarting, return_exceptions=True)
        if self._stream is not None:
            self._stream.write_eof()
        if self._reader_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader_task), START_TIMEOUT)
            except TimeoutError:
                log.error("writer process did not finish in %.0f s; killing it", START_TIMEOUT)
                await self._reap(grace=0.0)
            except Exception:  # a broken frame ended the reader; the child is reaped all the same
                log.exception("writer process: reading its answers failed")
                await self._reap(grace=0.0)
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def _reap(self, *, grace: float) -> int | None:
        """Wait up to `grace` seconds for the child to exit, then kill it; its exit code."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), grace)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        return self._process.returncode

    async def aclose(self) -> None:
        await self._reap(grace=0.0)


# --- the child's side ---------------------------------------------------------------------------


async def _serve(sock: socket.socket) -> None:
    reader, stream = await asyncio.open_unix_connection(sock=sock)
    hello = await _read_frame(reader)
    protocol, config = hello if isinstance(hello, tuple) and len(hello) == 2 else (None, hello)
    if protocol != PROTOCOL or not isinstance(config, WriterConfig):
        # e.g. the package was upgraded on disk under a running server: restart the server.
        raise SystemExit("writer process: the server speaks another version of the writer's protocol")
    from receiver.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    writer, engine = local_writer(
        config.database_url,
        config.policy,
        config.sqlite_synchronous,
        gather_window=0.0,
        sqlite_in_thread=False,
        statement_timeout=config.stall_timeout,
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
            except Exception as exc:  # one receipt the writer cannot take must not end the process
                log.error("writer process: receipt refused: %s", type(exc).__name__)
                stream.write(
                    _frame((request_id, None, f"the writer could not take the receipt ({type(exc).__name__})"))
                )
                continue
            committed.add_done_callback(lambda done, rid=request_id: answer(rid, done))
    finally:
        await writer.stop()
        await writer.aclose()
        await engine.dispose()
        await asyncio.sleep(0)  # let the last answers' callbacks run
        try:
            await stream.drain()
        except ConnectionError:  # the server is gone (killed): nobody is left to answer
            pass
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
