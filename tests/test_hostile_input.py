"""Hostile input: schemathesis against our OpenAPI schema, generated payloads, extreme sizes."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.schemas import alert_fingerprint
from tests.support import load_payload, make_alert, make_payload, receiver_env, running_receiver


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """Every operation in /openapi.json, fuzzed; a 5xx or a crash fails the test."""
    cli = shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or shutil.which("schemathesis")
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    with running_receiver(env=receiver_env(), cwd=tmp_path) as (base, proc):
        # Give the fuzzer something to find: a few alerts and notifications.
        import httpx

        for name in ("service-down-firing", "ha-duplicate-peer-a", "drift-one-resolved"):
            httpx.post(f"{base}/webhook", json=load_payload(name))
        run = subprocess.run(
            [
                cli,
                "run",
                f"{base}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--seed",
                "20261129",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert proc.poll() is None, "the receiver died under fuzzing"
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert "Tested: " in summary and "passed" in summary


hostile_text = st.text(st.characters(codec="utf-8"), max_size=200)
label_maps = st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True), hostile_text, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    labels=label_maps,
    annotations=label_maps,
    junk=json_values,
    field=st.sampled_from(["labels", "annotations", "startsAt", "endsAt", "status", "fingerprint", "generatorURL"]),
)
def test_generated_payloads_get_2xx_or_4xx_never_5xx(client_factory, labels, annotations, junk, field) -> None:  # type: ignore[no-untyped-def]
    base = make_payload([make_alert(model="m")])
    alert = base["alerts"][0]
    alert["labels"].update(labels)
    alert["annotations"] = annotations
    broken = json.loads(json.dumps(base))
    broken["alerts"][0][field] = junk
    client = client_factory()
    for payload in (base, broken):
        r = client.post("/webhook", json=payload)
        assert r.status_code in (200, 400, 413, 422), r.text
        assert "error" in r.json() or r.status_code == 200


@pytest.fixture(scope="module")
def client_factory(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real receiver process shared by the generated examples (each example posts twice)."""
    import httpx

    cwd = tmp_path_factory.mktemp("hostile")
    with running_receiver(env=receiver_env(), cwd=cwd) as (base, proc):
        client = httpx.Client(base_url=base, timeout=30)
        yield lambda: client
        client.close()
        assert proc.poll() is None, "the receiver died"


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("deep nesting", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400),
        (
            "invalid utf-8 in a label",
            json.dumps(load_payload("service-down-firing")).encode().replace(b"service-a", b"serv\xc3\x28ice"),
            400,
        ),
        (
            "a NUL and controls in values",
            json.dumps(make_payload([make_alert(model="m\u0000\u0007\u001b[31m")])).encode(),
            200,
        ),
        ("a 1 MiB label value", json.dumps(make_payload([make_alert(model="x" * (1 << 20))])).encode(), 200),
        (
            "numbers as labels",
            json.dumps(make_payload([dict(make_alert(), labels={"alertname": "X", "a": 1})])).encode(),
            422,
        ),
    ],
)
def test_extreme_bodies_get_clear_answers(client_factory, name: str, body: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    r = client_factory().post("/webhook", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, f"{name}: {r.text[:300]}"
    if status != 200:
        assert r.json()["error"]["message"]


def test_ten_thousand_alerts_in_one_payload(client_factory) -> None:  # type: ignore[no-untyped-def]
    alerts = [make_alert(model=f"m{i % 100}", feature=f"f{i}") for i in range(10_000)]
    payload = make_payload(alerts, group_key="storm")
    body = json.dumps(payload).encode()
    assert len(body) < 5 * 1024 * 1024  # under the default limit, so it must be accepted whole
    client = client_factory()
    r = client.post("/webhook", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:500]
    assert r.json()["events"] == {"firing": 10_000}
    stored = client.get("/api/v1/alerts", params={"matcher": "feature=f9999"}).json()["items"]
    assert len(stored) == 1


async def test_nul_characters_are_stored_as_replacement_characters(harness) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL cannot store NUL in text: the alert is kept with U+FFFD in its place, on both stores."""
    alert = make_alert(model="fraud\u0000detector")
    alert["annotations"] = {"summary": "line\u0000end"}
    payload = make_payload([alert], group_key='{}:{model="fraud\u0000detector"}')
    r = await harness.post_webhook(payload)
    assert r.status_code == 200, r.text
    assert r.json()["events"] == {"firing": 1}
    stored = (await harness.client.get("/api/v1/alerts", params={"matcher": 'model="fraud\ufffddetector"'})).json()
    [item] = stored["items"]
    assert item["labels"]["model"] == "fraud\ufffddetector"
    assert item["annotations"]["summary"] == "line\ufffdend"
    assert item["group_key"] == '{}:{model="fraud\ufffddetector"}'
    assert item["fingerprint"] == alert_fingerprint(alert["labels"])  # taken from the labels as sent


def _incompressible(size: int) -> str:
    """Text PostgreSQL cannot compress below its index entry limit ("x" * 4000 compresses to a few bytes)."""
    return base64.b64encode(random.Random(size).randbytes(size))[:size].decode()


async def test_labels_too_long_for_an_index_entry_are_stored_but_not_indexed(harness) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses index entries over 2,704 bytes; such an alert must still be stored (not 503 forever)."""
    long_ascii, long_wide = _incompressible(4000), "".join(chr(0x4E00 + i) for i in range(1000))  # 3,000 bytes
    payload = make_payload([make_alert(model="m", trace=long_ascii, note=long_wide, short="kept")])
    r = await harness.post_webhook(payload)
    assert r.status_code == 200, r.text
    [item] = (await harness.client.get("/api/v1/alerts", params={"matcher": 'short="kept"'})).json()["items"]
    assert (item["labels"]["trace"], item["labels"]["note"]) == (long_ascii, long_wide)
    indexed = await harness.scalar(f"SELECT count(*) FROM alert_labels WHERE alert_id = {item['id']}")
    assert indexed == len(item["labels"]) - 2


async def test_a_fingerprint_longer_than_alertmanagers_is_computed_from_the_labels(harness) -> None:  # type: ignore[no-untyped-def]
    alert = dict(make_alert(model="m"), fingerprint="f" * 40)
    first = await harness.post_webhook(make_payload([alert]))
    again = await harness.post_webhook(make_payload([alert], group_key="another group"))
    assert first.status_code == again.status_code == 200, first.text
    assert (first.json()["events"], again.json()["events"]) == ({"firing": 1}, {})  # the same occurrence
    [item] = (await harness.client.get("/api/v1/alerts")).json()["items"]
    assert item["fingerprint"] == alert_fingerprint(alert["labels"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"startsAt": "0001-01-01T00:00:00+01:00"}, "startsAt"),  # before year 1 in UTC
        ({"startsAt": "9999-12-31T23:30:00-01:00"}, "startsAt"),  # after year 9999 in UTC
        ({"endsAt": "9999-12-31T23:30:00-01:00", "status": "resolved"}, "endsAt"),
    ],
)
async def test_times_out_of_range_in_utc_are_a_422_naming_the_field(harness, change: dict, field: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    r = await harness.post_webhook(make_payload([{**make_alert(model="m"), **change}]))
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["error"])
    assert await harness.scalar("SELECT count(*) FROM receipts") == 0


@pytest.mark.parametrize("count", [2**31, 2**70])
async def test_truncated_alerts_beyond_a_32_bit_count_are_a_422(harness, count: int) -> None:  # type: ignore[no-untyped-def]
    r = await harness.post_webhook(make_payload([make_alert(model="m")], truncatedAlerts=count))
    assert r.status_code == 422, r.text
    assert "truncatedAlerts" in json.dumps(r.json()["error"])


async def test_grafana_links_of_an_alert_at_the_end_of_time_are_clamped(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    end_of_time = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    alert = make_alert(model="m", status="resolved", starts_at=end_of_time - timedelta(hours=1), ends_at=end_of_time)
    settings = make_settings(grafana={"url": "https://grafana.example", "default_dashboard": {"uid": "models"}})
    async with start_app(settings) as h:
        r = await h.post_webhook(make_payload([alert]))
        assert r.status_code == 200, r.text
        [item] = (await h.client.get("/api/v1/alerts")).json()["items"]
    assert f"to={int(datetime.max.replace(tzinfo=UTC).timestamp() * 1000)}" in item["links"]["dashboard"]


async def test_a_group_key_too_long_for_an_index_entry_still_queues_its_notifications(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    long_key = '{}:{trace="' + _incompressible(4000) + '"}'
    other_key = long_key[:-2] + 'y"}'  # the same start: must stay a different group
    route = [{"matchers": [], "email": ["oncall@example.com"]}]
    async with start_app(make_settings(routes=route)) as h:
        answers = [
            await h.post_webhook(make_payload([make_alert(model="m", instance=str(i))], group_key=key))
            for i, key in enumerate((long_key, other_key))
        ]
        assert [a.status_code for a in answers] == [200, 200], answers[0].text
        assert [a.json()["notifications"] for a in answers] == [1, 1]
        assert await h.scalar("SELECT count(DISTINCT group_key) FROM notifications") == 2
        [item] = (await h.client.get("/api/v1/alerts", params={"matcher": 'instance="0"'})).json()["items"]
        assert item["group_key"] == long_key  # the alert keeps the whole key


def test_a_client_that_goes_away_mid_body_costs_no_traceback(tmp_path: Path) -> None:
    """Alertmanager cancelling a slow send mid-body is routine: an INFO line, not an ERROR with a stack."""
    import socket
    import time

    import httpx

    log_path = tmp_path / "receiver.log"
    with running_receiver(env=receiver_env(), cwd=tmp_path, log_path=log_path) as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            sock.sendall(head.encode() + b'{"version": "4", "alerts": [')
        deadline = time.monotonic() + 30
        while "went away" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closed connection on its own schedule
        assert httpx.get(f"{base}/healthz").status_code == 200 and proc.poll() is None
    log = log_path.read_text()
    assert "went away" in log
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
