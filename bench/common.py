"""Shared pieces of the benchmark: processes, /proc readings, free ports, percentiles, a tiny HTTP client.

Everything here is loopback only. Servers are real subprocesses; the orchestrator never serves load.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """Our environment without RECEIVER_* leftovers, plus `values`. On the path: the frozen copy of the
    receiver's code (BENCH_CODE_DIR, see snapshot_code), then this checkout (bench/, tests/fakes/)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    paths = [os.environ.get("BENCH_CODE_DIR"), str(REPO), os.environ.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(values)
    return env


def _digest_tree(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((root / "receiver").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def commit_digest(commit: str) -> str | None:
    """The snapshot digest that `commit`'s receiver/ and templates/ would have (None if git fails)."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", commit, "receiver", "templates"], cwd=REPO, capture_output=True)
        if archive.returncode != 0:
            return None
        import io

        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        src = Path(tmp) / "src"
        if (src / "templates").is_dir() and not (src / "receiver" / "templates").exists():
            (src / "templates").rename(src / "receiver" / "templates")
        return _digest_tree(src)


def snapshot_code(dest: Path) -> str:
    """Copy receiver/ (with templates/ as its package data, as a wheel has it) to `dest`, make every server
    of this run import it from there, and return a digest of it.

    The receiver is being worked on while benchmarks run; without a frozen copy one run could measure
    several versions of it."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "receiver", dest / "receiver", ignore=ignore)
    if (REPO / "templates").is_dir() and not (dest / "receiver" / "templates").exists():
        shutil.copytree(REPO / "templates", dest / "receiver" / "templates", ignore=ignore)
    os.environ["BENCH_CODE_DIR"] = str(dest)
    sys.path.insert(0, str(dest))
    return _digest_tree(dest)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 (loopback only)
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM this one process (ours), then SIGKILL it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def server_process(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    workdir: Path,
    ready_path: str = "/healthz",
    port: int | None = None,
) -> Iterator[Server]:
    """Start `python <argv> --port P` in `workdir`, wait for `ready_path`, stop it afterwards."""
    port = port or free_port()
    log_path = workdir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
            env=dict(env),
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(name, proc, port, log_path)
        try:
            wait_http(f"{server.base}{ready_path}", proc)
            yield server
        finally:
            stop_process(proc)


def receiver_server(
    workdir: Path,
    database_url: str,
    *,
    dispatch: bool = False,
    config: Path | None = None,
    instrumented: bool = False,
    no_storage: bool = False,
    **env: str,
) -> AbstractContextManager[Server]:
    """`python -m receiver serve` on a free port, log level WARNING, dispatcher off unless asked.

    `instrumented`: bench/diagnose.py's wrapper instead (same server, plus counters at /bench/stats),
    with the writer as a thread of the server, where the counters can see its transactions.
    `no_storage`: bench/nostore.py's wrapper instead (same server, writer process and all, but its
    transactions answer without touching the database)."""
    values = {
        "RECEIVER_DATABASE_URL": database_url,
        "RECEIVER_LOG_LEVEL": "WARNING",
        "RECEIVER_DISPATCH__ENABLED": "true" if dispatch else "false",
        **({"RECEIVER_WRITER_PROCESS": "false"} if instrumented else {}),
        **env,
    }
    command = ["-m", "receiver", "serve"]
    if instrumented or no_storage:
        command = ["-m", "bench.diagnose" if instrumented else "bench.nostore"]
    argv = [*command, *(["--config", str(config)] if config else [])]
    return server_process("receiver", argv, env=clean_env(**values), workdir=workdir)


def baseline_server(workdir: Path) -> AbstractContextManager[Server]:
    """The parse-only FastAPI app (bench/baseline.py) under the same uvicorn settings as `serve`."""
    env = clean_env(RECEIVER_LOG_LEVEL="WARNING")
    return server_process("baseline", ["-m", "bench.baseline"], env=env, workdir=workdir)


def receiver_cli(*args: str, database_url: str, workdir: Path, timeout: float = 300, **env: str) -> str:
    """Run `alert-receiver ARGS` on `database_url` (more settings as RECEIVER_* in `env`); its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env=clean_env(RECEIVER_DATABASE_URL=database_url, RECEIVER_LOG_LEVEL="WARNING", **env),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"alert-receiver {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


# -- /proc -------------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) of a process, in kB."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(rest.split()[0])
    except FileNotFoundError:
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: the receiver's writer process counts as part of the server."""
    pids, index = [pid], 0
    while index < len(pids):
        parent = pids[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
            except FileNotFoundError:
                pass
    return pids


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds of a server and its child processes."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def server_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) summed over a server and its child processes (the sum of peaks bounds the peak)."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for p in process_tree(pid):
        for key, value in proc_status(p).items():
            total[key] += value
    return total


def system_busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all CPUs, since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU seconds of every process named `postgres` (server and backends) on this machine."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += cpu_seconds(int(entry.name))
    return total


def wait_quiet(threshold_pct: float, max_wait: float, sample: float = 1.0) -> float:
    """Wait (at most `max_wait` s) until the machine is busy below `threshold_pct` of one core for two
    samples in a row; returns the last busy % seen. Other users of the machine skew every figure."""
    deadline = time.monotonic() + max_wait
    quiet_in_a_row = 0
    busy = 0.0
    while True:
        before = system_busy_seconds()
        time.sleep(sample)
        busy = 100 * (system_busy_seconds() - before) / sample
        quiet_in_a_row = quiet_in_a_row + 1 if busy < threshold_pct else 0
        if quiet_in_a_row >= 2 or time.monotonic() >= deadline:
            return busy


def machine_info() -> dict[str, str | int]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    import sqlite3

    return {
        "nproc": os.cpu_count() or 0,
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def package_versions(names: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


# -- numbers ----------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


# -- a tiny HTTP/1.1 keep-alive client ---------------------------------------------------------------
# A load generator that spends its CPU on parsing HTTP would steal the second core from the server
# under test (the benchmark machine has two). This one writes prebuilt requests and reads
# Content-Length bodies: about 20 µs of Python per request.


class HttpError(Exception):
    pass


class RawConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one complete HTTP/1.1 request; returns (status, body). Reconnects after a close."""
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = -1
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif lname == b"transfer-encoding":
                    raise HttpError("chunked responses are not supported by the bench client")
            body = await self.reader.readexactly(length) if length > 0 else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        if close:
            await self.close()
        return status, body


def post_request(path: str, host: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get_request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
