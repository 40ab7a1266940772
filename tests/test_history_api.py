"""The history API: filters, matchers, keyset pagination, one alert in detail, receipts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import load_payload, make_alert, make_payload

T0 = datetime(2026, 11, 29, 8, tzinfo=UTC)


async def _seed(h) -> None:  # type: ignore[no-untyped-def]
    """12 alerts over 3 models, mixed severities, one resolved, one with a team label."""
    for i in range(12):
        model = ("fraud-detector", "churn", "ranker")[i % 3]
        severity = "critical" if i % 4 == 0 else "warning"
        extra = {"team": "payments"} if i == 5 else {}
        alert = make_alert(
            "ModelDrift" if i % 2 else "ModelLatencyHigh",
            starts_at=T0 + timedelta(minutes=i),
            model=model,
            severity=severity,
            feature=f"f{i}",
            **extra,
        )
        r = await h.post_webhook(make_payload([alert], group_key=f"g{i}"))
        assert r.status_code == 200
    resolved = make_alert(
        "ModelDrift",
        starts_at=T0 + timedelta(minutes=1),
        status="resolved",
        model="churn",
        severity="warning",
        feature="f1",
    )
    assert (await h.post_webhook(make_payload([resolved], group_key="g1"))).json()["events"] == {"resolved": 1}


async def _items(h, **params):  # type: ignore[no-untyped-def]
    r = await h.client.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _count_all_pages(h, params: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    """Alerts matching `params`, counted by following the cursor to the end, 500 a page."""
    seen, cursor = 0, None
    while True:
        page = {**params, "limit": "500", **({"cursor": cursor} if cursor else {})}
        body = (await h.client.get("/api/v1/alerts", params=page)).json()
        seen += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_filters(harness) -> None:  # type: ignore[no-untyped-def]
    await _seed(harness)
    assert len(await _items(harness)) == 12
    assert [a["labels"]["feature"] for a in await _items(harness, status="resolved")] == ["f1"]
    assert len(await _items(harness, alertname="ModelDrift")) == 6
    assert len(await _items(harness, severity="critical")) == 3
    assert {a["labels"]["model"] for a in await _items(harness, model="ranker")} == {"ranker"}
    assert len(await _items(harness, model="ranker")) == 4
    assert [a["labels"]["feature"] for a in await _items(harness, team="payments")] == ["f5"]
    assert len(await _items(harness, receiver="alert-receiver")) == 12
    assert len(await _items(harness, receiver="nobody")) == 0
    since = await _items(harness, since=(T0 + timedelta(minutes=10)).isoformat())
    assert sorted(a["labels"]["feature"] for a in since) == ["f10", "f11"]
    until = await _items(harness, until=(T0 + timedelta(minutes=2)).isoformat())
    assert sorted(a["labels"]["feature"] for a in until) == ["f0", "f1"]


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        (["feature=f3"], 1),
        (['model=~"fraud-.*|churn"'], 8),
        (["model!=churn"], 8),
        (['model!~"churn|ranker"'], 4),
        (['team=""'], 11),
        (['team!=""'], 1),
        (["team=~.*"], 12),
        (['severity="critical"', "model=ranker"], 1),
        (["nonexistent=~.+"], 0),
        (['model=~"fraud-.*|churn"', 'severity=~"crit.*"', 'feature!~"f1.*"'], 2),
    ],
)
async def test_matchers(harness, matchers, expected) -> None:  # type: ignore[no-untyped-def]
    await _seed(harness)
    assert len(await _items(harness, matcher=matchers)) == expected


async def test_newest_first_and_cursor_pages_cover_everything_once(harness) -> None:  # type: ignore[no-untyped-def]
    await _seed(harness)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = (await harness.client.get("/api/v1/alerts", params=params)).json()
        seen += [a["id"] for a in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 12


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"matcher": "severity=="}, 400),
        ({"limit": 0}, 422),
        ({"limit": 501}, 422),
        ({"status": "pending"}, 422),
        ({"since": "yesterday"}, 422),
    ],
)
async def test_bad_queries_are_4xx_with_a_reason(harness, params, status) -> None:  # type: ignore[no-untyped-def]
    r = await harness.client.get("/api/v1/alerts", params=params)
    assert r.status_code == status
    assert r.json()["error"]["message"]


async def test_alert_detail_has_events_and_receipts(harness) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("service-down-firing"))
    await harness.post_webhook(load_payload("service-down-resolved"))
    alert_id = (await _items(harness))[0]["id"]
    detail = (await harness.client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert [e["kind"] for e in detail["events"]] == ["firing", "resolved"]
    assert [r["status"] for r in detail["receipts"]] == ["firing", "resolved"]
    assert detail["events"][1]["receipt_id"] == detail["receipts"][1]["id"]
    assert detail["labels"]["job"] == "service-a"
    missing = await harness.client.get("/api/v1/alerts/999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_receipts_list_flags_duplicates(harness) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("ha-duplicate-peer-a"))
    await harness.post_webhook(load_payload("ha-duplicate-peer-b"))
    body = (await harness.client.get("/api/v1/receipts")).json()
    assert [r["duplicate"] for r in body["items"]] == [True, False]
    assert body["items"][0]["digest"] == body["items"][1]["digest"]
    alert_id = (await harness.client.get("/api/v1/alerts")).json()["items"][0]["id"]
    carried = (await harness.client.get(f"/api/v1/alerts/{alert_id}")).json()["receipts"]
    assert [r["duplicate"] for r in carried] == [False, True]  # the HA peer's copy carried it too
    dups = (await harness.client.get("/api/v1/receipts", params={"duplicate": "true"})).json()["items"]
    assert [r["external_url"] for r in dups] == ["http://127.0.0.1:59215"]  # peer b came second


async def test_health_and_readiness(harness) -> None:  # type: ignore[no-untyped-def]
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    assert (await harness.client.get("/readyz")).status_code == 200


async def test_openapi_documents_the_endpoints(harness) -> None:  # type: ignore[no-untyped-def]
    spec = (await harness.client.get("/openapi.json")).json()
    for path in ("/webhook", "/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/receipts"):
        assert path in spec["paths"]
    body_schema = spec["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "groupKey" in str(body_schema)


async def test_equality_matcher_pages_beyond_the_label_index_window(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    """More matching alerts than the index read-ahead, combined with a filter that keeps only a few."""
    from receiver.store import history

    alerts = [
        make_alert(model="big", feature=f"f{i}", severity="critical" if i % 500 == 0 else "warning")
        for i in range(2500)
    ]
    async with start_app(make_settings()) as h:
        assert (await h.post_webhook(make_payload(alerts, group_key="big"))).status_code == 200
        assert history._PROBE < 2500
        critical = (
            await h.client.get("/api/v1/alerts", params={"matcher": "model=big", "severity": "critical"})
        ).json()
        assert sorted(a["labels"]["feature"] for a in critical["items"]) == ["f0", "f1000", "f1500", "f2000", "f500"]
        assert await _count_all_pages(h, {"matcher": "model=big"}) == 2500


async def test_label_copy_filters_page_beyond_the_label_index_window(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    """alertname/severity/model filters are found through the label index (the model one through the
    label named by `model_label`); combined with a filter that keeps few, they still find every match."""
    from receiver.store import history

    alerts = [
        make_alert("Rare" if i % 700 == 0 else "Common", ml_model="big", feature=f"f{i}", severity="warning")
        for i in range(2500)
    ]
    async with start_app(make_settings(model_label="ml_model")) as h:
        assert (await h.post_webhook(make_payload(alerts, group_key="big"))).status_code == 200
        assert history._PROBE < 2500
        rare = (await h.client.get("/api/v1/alerts", params={"model": "big", "alertname": "Rare"})).json()
        assert sorted(a["labels"]["feature"] for a in rare["items"]) == ["f0", "f1400", "f2100", "f700"]
        assert await _count_all_pages(h, {"severity": "warning", "model": "big"}) == 2500
        assert (await h.client.get("/api/v1/alerts", params={"model": "other"})).json()["items"] == []


async def test_distinct_label_values_skip_scan_matches_select_distinct(harness) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from receiver.store.history import distinct_label_values

    await _seed(harness)
    async with harness.state.engine.connect() as conn:  # past the cap: the one-pass fallback
        assert len(await distinct_label_values(conn, "feature", cap=3)) == 12
    async with harness.state.engine.connect() as conn:
        for name in ("model", "feature", "severity", "team", "absent"):
            plain = await conn.execute(text("SELECT DISTINCT value FROM alert_labels WHERE name = :n"), {"n": name})
            assert sorted(await distinct_label_values(conn, name)) == sorted(plain.scalars()), name


async def test_a_past_time_window_pages_like_a_scan(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    """A window with more alerts after it than the scan may step over: pages come from the window's
    ids. Old-window alerts arrive before and after the newer ones, so id order differs from startsAt."""
    from receiver.store import history

    window_start = T0 - timedelta(days=10)
    newer = [make_alert(instance=f"new-{i}", starts_at=T0 + timedelta(seconds=i)) for i in range(5200)]
    old = [
        make_alert(
            instance=f"old-{i}", starts_at=window_start + timedelta(seconds=i), status="resolved" if i % 3 else "firing"
        )
        for i in range(1500)
    ]
    async with start_app(make_settings()) as h:
        assert len(newer) > history._NEWER_ROWS_SCANNED
        for group, batch in enumerate([old[:700], newer[:2600], old[700:], newer[2600:]]):
            assert (await h.post_webhook(make_payload(batch, group_key=f"g{group}"))).status_code == 200
        outside = make_alert(instance="just-after", starts_at=window_start + timedelta(hours=3))
        assert (await h.post_webhook(make_payload([outside], group_key="after"))).status_code == 200

        async def pages(window: bool = True, **params: str) -> list[dict]:
            seen, cursor = [], None
            while True:
                query = {"since": window_start.isoformat(), "until": (window_start + timedelta(hours=3)).isoformat()}
                query = (query if window else {}) | {"limit": "500", **params, **({"cursor": cursor} if cursor else {})}
                body = (await h.client.get("/api/v1/alerts", params=query)).json()
                seen += body["items"]
                cursor = body["next_cursor"]
                if cursor is None:
                    return seen

        def in_window(a: dict) -> bool:
            return a["labels"]["instance"].startswith("old-")

        everything = await pages(window=False)  # newest first, scanning every alert
        assert len(everything) == 5200 + 1500 + 1
        by_scan = [a["id"] for a in everything if in_window(a)]
        assert len(by_scan) == 1500  # more than one chunk of ids
        assert [a["id"] for a in await pages()] == by_scan
        firing = [a["id"] for a in everything if in_window(a) and a["status"] == "firing"]
        assert [a["id"] for a in await pages(status="firing", limit="7")] == firing
        old_1 = [a["id"] for a in everything if a["labels"]["instance"].startswith("old-1")]
        assert [a["id"] for a in await pages(matcher='instance=~"old-1.*"', limit="50")] == old_1


PREFIX_VALUES = [
    "pod-1",
    "pod-12",
    "pod-12x",
    "pod-13",
    "pod-2",
    "pod.1",
    "pod-",
    "pod",
    "pod-1ü",
    "pod-1\U0010ffff",
    "xpod-1",
]


@pytest.mark.parametrize(
    "matcher",
    [
        'instance=~"pod-1.*"',
        'instance!~"pod-1.*"',
        'instance=~"pod-1?"',
        'instance=~"pod-12x|pod-2"',
        'instance=~"pod\\\\.1"',
        'instance!~"pod-1"',
        'instance=~"pod-1[0-9]"',
        'instance=~"pod-1\U0010ffff"',
    ],
)
async def test_regex_matchers_agree_with_alertmanager_semantics(harness, matcher: str) -> None:  # type: ignore[no-untyped-def]
    """Regexes with a literal prefix read only that prefix's range of values; answers stay exact."""
    from receiver.matchers import parse_matcher

    alerts = [make_alert(instance=v, starts_at=T0 + timedelta(minutes=i)) for i, v in enumerate(PREFIX_VALUES)]
    alerts.append(make_alert(starts_at=T0 + timedelta(hours=1)))  # no instance label: counts as ""
    assert (await harness.post_webhook(make_payload(alerts))).status_code == 200
    m = parse_matcher(matcher)
    expected = sorted(a["labels"].get("instance", "") for a in alerts if m.matches(a["labels"]))
    found = sorted(a["labels"].get("instance", "") for a in await _items(harness, matcher=matcher))
    assert found == expected
