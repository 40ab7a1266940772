"""The writer process (receiver/writer_process.py): the wire, answers, a child that dies, shutdown.

These run the real child (`python -m receiver.writer_process`) against SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from receiver.catalog import ModelCatalog
from receiver.config import ModelEntry, Settings
from receiver.ingest import Preparer
from receiver.schemas import WebhookPayload
from receiver.store.ingest import IngestOutcome
from receiver.writer_process import ProcessWriter, decode_outcome, decode_receipt, encode_outcome, encode_receipt
from tests.support import (
    free_port,
    load_payload,
    make_alert,
    make_payload,
    receiver_env,
    running_receiver,
    wait_ready,
)

HANG_GUARD = 30  # seconds; only so a broken child fails the test instead of hanging it


def _prepared(payload: dict) -> object:  # type: ignore[type-arg]
    settings = Settings(grafana={"url": "https://grafana.example"})
    catalog = ModelCatalog(
        [ModelEntry(name="fraud", owner="alice@example.com", team="risk", runbook_url="https://rb.example/fraud")]
    )
    return Preparer.from_settings(settings, catalog).prepare(WebhookPayload.model_validate(payload))


@pytest.mark.parametrize(
    "payload",
    [
        load_payload("ha-duplicate-peer-a"),
        load_payload("drift-one-resolved"),
        load_payload("crd-unicode-nanoseconds"),
        make_payload(
            [
                make_alert(model="fraud", instance="pod-\u00e9\u2603\U0001f600", note="a\nb\"c'"),
                make_alert(
                    "Other",
                    status="resolved",
                    starts_at=datetime(2026, 1, 1, 0, 0, 59, tzinfo=timezone(timedelta(hours=5))),
                ),
            ],
            truncatedAlerts=7,
            notification_reason="repeat interval",
        ),
    ],
    ids=["ha-peer", "resolved", "unicode-crd", "hostile"],
)
def test_a_receipt_crosses_the_wire_unchanged(payload: dict) -> None:  # type: ignore[type-arg]
    receipt = _prepared(payload)
    crossed = decode_receipt(pickle.loads(pickle.dumps(encode_receipt(receipt))))  # type: ignore[arg-type]
    assert crossed == receipt
    assert crossed.alerts and all(type(a) is type(receipt.alerts[0]) for a in crossed.alerts)  # type: ignore[attr-defined]
    assert [a.key for a in crossed.alerts] == [a.key for a in receipt.alerts]  # type: ignore[attr-defined]


def test_an_outcome_crosses_the_wire_unchanged() -> None:
    outcome = IngestOutcome(7, False, [1, 2, 3], notification_ids=[9])
    outcome.events["firing"] += 2
    outcome.events["resolved"] += 1
    assert decode_outcome(pickle.loads(pickle.dumps(encode_outcome(outcome)))) == outcome


async def _sequence(h) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """A firing group, its HA duplicate, one alert resolving, a stale re-send of the first: every answer."""
    answers = []
    for name in ("ha-duplicate-peer-a", "ha-duplicate-peer-b", "drift-one-resolved", "ha-duplicate-peer-a"):
        r = await h.post_webhook(load_payload(name))
        assert r.status_code == 200, r.text
        answers.append({k: v for k, v in r.json().items() if k != "receipt_id"})  # ids differ on PostgreSQL
    return answers


async def test_answers_and_rows_match_the_in_process_writer(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    seen = {}
    for mode in (True, False):
        async with start_app(make_settings(writer_process=mode)) as h:
            assert isinstance(h.state.writer, ProcessWriter) is mode
            answers = await _sequence(h)
            rows = [
                await h.scalar(f"SELECT count(*) FROM {t}") for t in ("receipts", "alerts", "events", "notifications")
            ]
            seen[mode] = (answers, rows)
            async with h.state.engine.begin() as conn:  # the next mode starts from an empty database
                for table in ("notification_alerts", "notifications", "receipt_alerts", "events", "alert_labels",
                              "alerts", "receipts", "receipt_claims"):  # fmt: skip
                    await conn.exec_driver_sql(f"DELETE FROM {table}")
    assert seen[True] == seen[False]
    answers, rows = seen[True]
    assert [a["duplicate"] for a in answers] == [False, True, False, True]  # the re-send is within the window
    assert [a["events"] for a in answers] == [{"firing": 3}, {}, {"resolved": 1}, {}]
    assert rows[:3] == [4, 3, 4]


async def test_concurrent_webhooks_share_the_child_and_each_gets_its_own_answer(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True)) as h:
        # Request i carries i % 7 + 1 alerts, so an answer handed to the wrong request shows.
        sizes = [i % 7 + 1 for i in range(40)]
        payloads = [
            make_payload([make_alert(model=f"m{i}", instance=f"i{i}-{k}") for k in range(n)])
            for i, n in enumerate(sizes)
        ]
        answers = await asyncio.wait_for(asyncio.gather(*(h.post_webhook(p) for p in payloads)), HANG_GUARD)
        assert [a.status_code for a in answers] == [200] * 40
        assert [(a.json()["alerts"], a.json()["events"]) for a in answers] == [(n, {"firing": n}) for n in sizes]
        assert len({a.json()["receipt_id"] for a in answers}) == 40
        assert await h.scalar("SELECT count(*) FROM alerts") == sum(sizes)


async def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(HANG_GUARD):
        while not condition():  # noqa: ASYNC110 (polls the writer, which has no event to wait on)
            await asyncio.sleep(0.01)


async def test_requests_in_flight_when_the_child_dies_get_503(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True)) as h:
        writer = h.state.writer
        os.kill(writer.pid, signal.SIGSTOP)  # it reads nothing more: the requests stay in flight
        payloads = [make_payload([make_alert(model=f"m{i}", instance=f"i{i}")]) for i in range(5)]
        posts = [asyncio.create_task(h.post_webhook(p)) for p in payloads]
        await _until(lambda: len(writer._pending) == 5, "five receipts sent to the child")
        os.kill(writer.pid, signal.SIGKILL)
        answers = await asyncio.wait_for(asyncio.gather(*posts), HANG_GUARD)
        assert [a.status_code for a in answers] == [503] * 5
        assert {a.json()["error"]["code"] for a in answers} == {"storage_unavailable"}


async def test_shutdown_commits_and_answers_what_is_in_flight(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True)) as h:
        writer = h.state.writer
        pid = writer.pid
        os.kill(pid, signal.SIGSTOP)
        payloads = [make_payload([make_alert(model=f"m{i}", instance=f"i{i}")]) for i in range(5)]
        posts = [asyncio.create_task(h.post_webhook(p)) for p in payloads]
        await _until(lambda: len(writer._pending) == 5, "five receipts sent to the child")
        stopping = asyncio.create_task(writer.stop())  # what the lifespan does on SIGTERM
        await asyncio.sleep(0.2)
        assert not writer.running and (await h.post_webhook(load_payload("service-down-firing"))).status_code == 503
        os.kill(pid, signal.SIGCONT)
        answers = await asyncio.wait_for(asyncio.gather(*posts), HANG_GUARD)
        await asyncio.wait_for(stopping, HANG_GUARD)
        assert [a.status_code for a in answers] == [200] * 5
        assert await h.scalar("SELECT count(*) FROM alerts") == 5
        assert writer._process.returncode == 0  # it exited by itself, not killed


async def test_a_killed_child_costs_503s_not_the_server_and_is_replaced(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True)) as h:
        writer = h.state.writer
        first_pid = writer.pid
        assert (await h.post_webhook(load_payload("service-down-firing"))).status_code == 200
        os.kill(first_pid, signal.SIGKILL)
        # The death is noticed at once; a new child follows RESTART_DELAY (1 s) later.
        async with asyncio.timeout(HANG_GUARD):
            while writer.running:  # noqa: ASYNC110 (the writer has no event to wait on)
                await asyncio.sleep(0.01)
        refused = await h.post_webhook(load_payload("service-down-resolved"))
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
        assert (await h.client.get("/readyz")).status_code == 503
        async with asyncio.timeout(HANG_GUARD):
            while not writer.running:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert writer.pid != first_pid
        assert (await h.client.get("/readyz")).status_code == 200
        assert "receiver_writer_restarts_total 1.0" in (await h.client.get("/metrics")).text
        # Alertmanager's retry of the refused webhook lands, exactly once.
        assert (await h.post_webhook(load_payload("service-down-resolved"))).json()["events"] == {"resolved": 1}
        assert await h.scalar("SELECT count(*) FROM alerts") == 1
        assert await h.scalar("SELECT count(*) FROM events") == 2


async def test_a_child_that_stops_answering_is_killed_and_replaced(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True, writer_stall_timeout="1s")) as h:
        writer = h.state.writer
        stuck_pid = writer.pid
        os.kill(stuck_pid, signal.SIGSTOP)  # alive, holding its socket, answering nothing: a hung child
        payloads = [make_payload([make_alert(model=f"m{i}", instance=f"i{i}")]) for i in range(3)]
        answers = await asyncio.wait_for(asyncio.gather(*(h.post_webhook(p) for p in payloads)), HANG_GUARD)
        assert [a.status_code for a in answers] == [503] * 3
        assert {a.json()["error"]["code"] for a in answers} == {"storage_unavailable"}
        with pytest.raises(ProcessLookupError):
            os.kill(stuck_pid, 0)  # killed and reaped, not left stopped
        async with asyncio.timeout(HANG_GUARD):
            while not writer.running:  # noqa: ASYNC110 (the writer has no event to wait on)
                await asyncio.sleep(0.05)
        assert writer.pid != stuck_pid
        metrics = (await h.client.get("/metrics")).text
        assert "receiver_writer_stalls_total 1.0" in metrics and "receiver_writer_restarts_total 1.0" in metrics
        # Alertmanager's retries land on the new child, each stored once.
        retried = await asyncio.gather(*(h.post_webhook(p) for p in payloads))
        assert [a.json()["events"] for a in retried] == [{"firing": 1}] * 3
        assert await h.scalar("SELECT count(*) FROM alerts") == 3


async def test_a_child_with_nothing_to_answer_is_not_killed_however_long_it_is_quiet(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True, writer_stall_timeout="0.2s")) as h:
        writer = h.state.writer
        pid = writer.pid
        assert (await h.post_webhook(load_payload("service-down-firing"))).status_code == 200
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(1.0)  # five stall timeouts with no receipt waiting
        os.kill(pid, signal.SIGCONT)
        assert (await h.post_webhook(load_payload("service-down-resolved"))).json()["events"] == {"resolved": 1}
        assert writer.pid == pid and writer.stalls == 0 and writer.restarts == 0


async def test_a_stalled_childs_statement_does_not_outlive_it_on_postgresql(start_app, postgres_server_url) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL keeps running a statement whose client vanished while it waits on a lock; the writer's
    statement_timeout (its stall timeout) ends it, so nothing of the old child lingers in the database."""
    from sqlalchemy import text

    settings = Settings(
        database_url=postgres_server_url, dispatch={"enabled": False}, writer_process=True, writer_stall_timeout="1s"
    )
    async with start_app(settings) as h:
        async with h.state.engine.connect() as blocker:
            await blocker.execute(text("LOCK TABLE receipt_claims IN ACCESS EXCLUSIVE MODE"))  # held until rollback
            r = await asyncio.wait_for(h.post_webhook(make_payload([make_alert(model="m")])), HANG_GUARD)
            assert r.status_code == 503, r.text
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            async with asyncio.timeout(HANG_GUARD):
                while (await blocker.execute(waiting)).scalar():  # noqa: ASYNC110 (polls the database)
                    await asyncio.sleep(0.1)  # the statement times out a second after it began to wait
            await blocker.rollback()
        async with asyncio.timeout(HANG_GUARD):  # the killed child's successor starts RESTART_DELAY later
            while not h.state.writer.running:  # noqa: ASYNC110 (the writer has no event to wait on)
                await asyncio.sleep(0.05)
        assert (await h.post_webhook(make_payload([make_alert(model="m")]))).status_code == 200


async def test_the_child_exits_with_the_app(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(writer_process=True)) as h:
        pid = h.state.writer.pid
        payloads = [make_payload([make_alert(model=f"m{i}", instance=f"i{i}")]) for i in range(20)]
        answers = await asyncio.gather(*(h.post_webhook(p) for p in payloads))
    assert [a.status_code for a in answers] == [200] * 20
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: the lifespan waited for it


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def _wait_gone(pid: int, timeout: float = HANG_GUARD) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped by init
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_the_child_does_not_outlive_a_killed_server(tmp_path: Path) -> None:
    with running_receiver(env=receiver_env(), cwd=tmp_path) as (base, proc):
        assert httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")).status_code == 200
        (child,) = _children(proc.pid)
        proc.kill()
        proc.wait(timeout=HANG_GUARD)
        assert _wait_gone(child), "the writer process lived on after its server was killed"
    with sqlite3.connect(tmp_path / "alert-receiver.db") as db:
        assert db.execute("SELECT count(*) FROM alerts").fetchone() == (1,)


def test_ctrl_c_on_the_terminal_stops_the_server_first_and_the_child_with_it(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the whole process group. The child must not die of it: the server's
    # graceful shutdown still commits through it, and only then closes its socket.
    with running_receiver(env=receiver_env(), cwd=tmp_path, new_session=True) as (base, proc):
        assert httpx.post(f"{base}/webhook", json=load_payload("service-down-firing")).status_code == 200
        (child,) = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=HANG_GUARD) in (0, -signal.SIGINT)
        assert _wait_gone(child)
    log = next(tmp_path.glob("receiver-*.log")).read_text()
    assert "Application shutdown complete" in log
    assert "exited with code" not in log  # it stopped when asked, not killed by the signal


def test_the_child_imports_the_servers_package_not_one_in_the_working_directory(tmp_path: Path) -> None:
    # `alert-receiver` (the console script) keeps the working directory off its own path; the child
    # must too, or a stray `receiver/` wherever serve was started would be what commits webhooks.
    (tmp_path / "receiver").mkdir()
    (tmp_path / "receiver" / "__init__.py").write_text('raise SystemExit("imported from the working directory")\n')
    script = Path(sys.executable).parent / "alert-receiver"
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(script), "serve", "--port", str(port)], cwd=tmp_path, env=receiver_env(), stdout=out, stderr=out
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            answer = httpx.post(f"http://127.0.0.1:{port}/webhook", json=load_payload("service-down-firing"))
            assert answer.status_code == 200, answer.text
        finally:
            proc.terminate()
            proc.wait(timeout=HANG_GUARD)
    assert "imported from the working directory" not in log.read_text()
