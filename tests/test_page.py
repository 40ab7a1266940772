"""The HTML history pages: `/` (list, filters, paging) and `/alerts/{id}`, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy import update

from receiver.api.page import format_duration, split_matchers
from receiver.render import SHIPPED_TEMPLATES
from receiver.store.tables import alerts, notifications
from tests.delivery import dispatcher_for
from tests.support import load_payload, make_alert, make_payload

T0 = datetime(2026, 11, 29, 8, tzinfo=UTC)
ROW = re.compile(r'<a href="/alerts/(\d+)">')


def alert_ids(page: str) -> list[int]:
    """The alert ids a list page shows, in order."""
    return [int(i) for i in ROW.findall(page)]


async def _get(h: Any, path: str, expect: int = 200, **params: Any) -> str:
    r = await h.client.get(path, params=params)
    assert r.status_code == expect, r.text[-3000:]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


async def _seed(h: Any) -> dict[str, int]:
    """12 alerts over 3 models, one resolved, one with a team; returns feature -> alert id."""
    for i in range(12):
        model = ("fraud-detector", "churn", "ranker")[i % 3]
        extra = {"team": "payments"} if i == 5 else {}
        alert = make_alert(
            "ModelDrift" if i % 2 else "ModelLatencyHigh",
            starts_at=T0 + timedelta(minutes=i),
            model=model,
            severity="critical" if i % 4 == 0 else "warning",
            feature=f"f{i}",
            **extra,
        )
        assert (await h.post_webhook(make_payload([alert], group_key=f"g{i}"))).status_code == 200
    resolved = make_alert(
        "ModelDrift",
        starts_at=T0 + timedelta(minutes=1),
        status="resolved",
        model="churn",
        severity="warning",
        feature="f1",
    )
    assert (await h.post_webhook(make_payload([resolved], group_key="g1"))).status_code == 200
    items = (await h.client.get("/api/v1/alerts", params={"limit": 100})).json()["items"]
    return {a["labels"]["feature"]: a["id"] for a in items}


async def test_list_shows_posted_alerts_newest_first(harness) -> None:  # type: ignore[no-untyped-def]
    empty = await _get(harness, "/")
    assert "No alerts have been received yet." in empty
    await harness.post_webhook(load_payload("service-down-firing"))
    await harness.post_webhook(load_payload("drift-one-resolved"))
    r = await harness.client.get("/")
    page = r.text
    api = (await harness.client.get("/api/v1/alerts")).json()["items"]
    assert alert_ids(page) == [a["id"] for a in api] and len(api) == 4
    assert "ServiceDown" in page and "service-a is down" in page
    assert "ModelPredictionDrift" in page and "PSI of feature amount above 0.2" in page
    assert '<span class="badge firing">firing</span>' in page
    assert '<span class="badge resolved">resolved</span>' in page
    assert "2026-11-29 16:38:25" in page  # started, UTC
    assert "firing for" in page
    # Self-contained: no scripts and no external assets, enforced by the CSP too.
    assert "<script" not in page and 'src="http' not in page and "stylesheet" not in page
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # falls back to 'none'


async def test_model_owner_and_links_from_enrichment(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        models=[
            {
                "name": "fraud-detector",
                "owner": "alice@example.com",
                "team": "risk",
                "runbook_url": "https://runbooks.example.com/fraud",
            }
        ],
        grafana={"url": "https://grafana.example.com", "default_dashboard": {"uid": "ml-models", "slug": "ml-models"}},
    )
    async with start_app(settings) as h:
        await h.post_webhook(load_payload("drift-one-resolved"))
        page = await _get(h, "/")
        assert "alice@example.com" in page and "v3.2.0" in page
        for name in ("dashboard", "explore", "runbook", "silence"):
            assert f'target="_blank">{name}</a>' in page
        assert 'href="https://runbooks.example.com/fraud"' in page
        assert 'href="https://grafana.example.com/d/ml-models/ml-models?' in page
        # The model datalist offers catalog names.
        assert '<option value="fraud-detector">' in page


async def test_filters(harness) -> None:  # type: ignore[no-untyped-def]
    ids = await _seed(harness)
    assert len(alert_ids(await _get(harness, "/"))) == 12
    # An untouched form sends every field empty: that is no filter at all.
    blank = {"status": "", "alertname": "", "severity": "", "model": "", "team": "", "matcher": ""}
    assert len(alert_ids(await _get(harness, "/", **blank))) == 12
    assert alert_ids(await _get(harness, "/", **{**blank, "status": "resolved"})) == [ids["f1"]]
    assert len(alert_ids(await _get(harness, "/", alertname="ModelDrift"))) == 6
    assert len(alert_ids(await _get(harness, "/", severity="critical"))) == 3
    assert len(alert_ids(await _get(harness, "/", model="ranker"))) == 4
    assert alert_ids(await _get(harness, "/", team="payments")) == [ids["f5"]]
    assert len(alert_ids(await _get(harness, "/", receiver="alert-receiver"))) == 12
    # Matchers: one per parameter like the API, or several in the one form field, braces optional.
    assert len(alert_ids(await _get(harness, "/", matcher='model=~"fraud-.*|churn"'))) == 8
    assert len(alert_ids(await _get(harness, "/", matcher='team=""'))) == 11
    both = alert_ids(await _get(harness, "/", matcher='{severity="critical", model=ranker}'))
    assert both == alert_ids(await _get(harness, "/", matcher=['severity="critical"', "model=ranker"]))
    assert both == [ids["f8"]]
    assert alert_ids(await _get(harness, "/", matcher='feature=~"f1|f1,0"')) == [ids["f1"]]  # comma in quotes
    combined = await _get(harness, "/", status="firing", alertname="ModelDrift", matcher="model=churn")
    assert alert_ids(combined) == [ids["f7"]]
    # The form shows the filters back.
    assert '<option value="firing" selected>' in combined and 'value="ModelDrift"' in combined
    assert 'value="model=churn"' in combined
    assert "No alerts match these filters." in await _get(harness, "/", alertname="Nope")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"matcher": "severity=="}, "invalid matcher 'severity=='"),
        ({"matcher": 'model=~"("'}, "bad regular expression"),
        ({"cursor": "not-a-cursor"}, "is not a cursor from this endpoint"),
        ({"status": "pending"}, "status 'pending' is not one of"),
        ({"limit": "0"}, "limit '0' must be"),
        ({"since": "yesterday"}, "since 'yesterday' is not an RFC 3339 time"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until 9999-12-31T23:59:59-01:00 is before year 1 or after year 9999"),
    ],
)
async def test_bad_filters_are_a_400_page_with_the_message(harness, params, message) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("service-down-firing"))
    page = await _get(harness, "/", 400, **params)
    assert str(escape(message)) in page
    assert '<div class="notice" role="alert"><strong>Invalid filter:</strong>' in page
    assert '<form class="filters"' in page  # the form stays, to fix the filter
    assert alert_ids(page) == []


async def test_older_link_pages_through_everything_once_keeping_filters(harness) -> None:  # type: ignore[no-untyped-def]
    await _seed(harness)
    seen: list[int] = []
    path, pages = "/?severity=warning&matcher=team%21%3D%22nobody%22&limit=3", 0
    while path:
        r = await harness.client.get(path)
        assert r.status_code == 200
        seen += alert_ids(r.text)
        pages += 1
        older = re.search(r'<a href="([^"]+)" rel="next">Older', r.text)
        path = html.unescape(older.group(1)) if older else ""
        if older:
            assert "severity=warning" in path and "limit=3" in path and "matcher=team%21%3D%22nobody%22" in path
        if pages > 1:
            assert "&larr; Newest</a>" in r.text
    assert pages == 3  # 9 warnings, 3 per page
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 9
    api = (await harness.client.get("/api/v1/alerts", params={"severity": "warning", "limit": 100})).json()
    assert seen == [a["id"] for a in api["items"]]


async def test_detail_shows_labels_events_receipts_and_notifications(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(models=[{"name": "fraud-detector", "owner": "alice@example.com", "team": "risk"}])
    async with start_app(settings) as h:
        await h.post_webhook(load_payload("ha-duplicate-peer-a"))
        await h.post_webhook(load_payload("ha-duplicate-peer-b"))
        await h.post_webhook(load_payload("drift-one-resolved"))  # resolves the `amount` alert
        dispatcher, sent = dispatcher_for(h), 0
        for _ in range(5):  # a group's resolved message waits for its firing message (threading)
            sent += await dispatcher.run_once()
        assert sent == 4  # slack and email to the owner, firing then resolved, through the log
        items = (await h.client.get("/api/v1/alerts", params={"matcher": "feature=amount"})).json()["items"]
        alert_id = items[0]["id"]
        # The HA peer's duplicate delivery is listed among the receipts that carried the alert.
        dup = (await h.client.get("/api/v1/receipts", params={"duplicate": "true"})).json()["items"][0]["id"]
        page = await _get(h, f"/alerts/{alert_id}")
    assert f'ModelPredictionDrift <span class="muted">#{alert_id}</span>' in page
    assert '<td class="mono">feature</td><td class="mono wrap">amount</td>' in page
    assert "PSI of feature amount above 0.2" in page
    assert "alice@example.com" in page and "<td>risk</td>" in page and "3.2.0" in page
    # The timeline: firing, then resolved, each pointing at the receipt that carried it.
    timeline = page.split('<ol class="timeline">')[1].split("</ol>")[0]
    assert timeline.count("<li ") == 2
    assert timeline.index('<span class="badge firing">firing</span>') < timeline.index("badge resolved")
    receipt_ids = re.findall(r'<tr id="receipt-(\d+)">', page)
    assert len(receipt_ids) == 3
    assert re.findall(r'href="#receipt-(\d+)"', timeline) == [r for r in receipt_ids if int(r) != dup]
    assert page.count('<span class="badge duplicate">duplicate</span>') == 1
    notes = page.split("<h2>Notifications</h2>")[1]
    assert notes.count('<td data-label="Channel">') == 4
    assert '<td data-label="Channel">slack</td>' in notes and '<td data-label="Channel">email</td>' in notes
    assert notes.count('<span class="badge sent">sent</span>') == 4
    assert '<td data-label="Kind">resolved</td>' in notes
    assert '<td data-label="Attempts">1</td>' in notes


async def test_detail_of_a_resolved_alert(harness) -> None:  # type: ignore[no-untyped-def]
    await harness.post_webhook(load_payload("service-down-firing"))
    await harness.post_webhook(load_payload("service-down-resolved"))
    alert_id = (await harness.client.get("/api/v1/alerts")).json()["items"][0]["id"]
    async with harness.state.engine.begin() as conn:  # as the dispatcher leaves a message it gave up on
        await conn.execute(
            update(notifications)
            .where(notifications.c.kind == "firing")
            .values(status="failed", attempts=7, reason="gave_up", last_error="550 <mailbox> unavailable")
        )
    page = await _get(harness, f"/alerts/{alert_id}")
    timeline = page.split('<ol class="timeline">')[1].split("</ol>")[0]
    assert timeline.index("badge firing") < timeline.index("badge resolved")
    assert "<th>Ended</th>" in page and "<th>Duration</th>" in page
    assert "This alert has no model label." in page
    notes = page.split("<h2>Notifications</h2>")[1]
    assert notes.count('<td data-label="Recipient" class="wrap">unrouted</td>') == 2  # no model: the log
    assert '<span class="badge failed">failed</span>' in notes and '<span class="badge pending">pending</span>' in notes
    assert '<td data-label="Attempts">7</td>' in notes and '<td data-label="Reason">gave_up</td>' in notes
    assert "550 &lt;mailbox&gt; unavailable" in notes
    listed = await _get(harness, "/")
    assert "ended 2026-11-29" in listed


@pytest.mark.parametrize("alert_id", ["999999", "abc", "99999999999999999999999", "-1"])
async def test_unknown_alert_is_a_404_page(harness, alert_id) -> None:  # type: ignore[no-untyped-def]
    page = await _get(harness, f"/alerts/{alert_id}", 404)
    assert "Alert not found" in page and f"There is no alert with id {alert_id}." in page


async def test_hostile_values_are_escaped_and_never_links(make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        models=[{"name": "fraud-detector", "owner": "alice@example.com", "extra": {"note": "<b>bold</b>"}}]
    )
    async with start_app(settings) as h:
        evil = make_alert(
            '<script>alert("x")</script>', model="fraud-detector", severity='crit"ical', job='a" onmouseover="alert(1)'
        )
        evil["annotations"] = {
            "summary": "<img src=x onerror=alert(1)>",
            "description": "</table><iframe src=//evil.example>",
            "runbook_url": "javascript:alert(document.cookie)",
            "dashboard_url": " JavaScript:alert(2)",
            "more": "https://docs.example.com/?a=1&b=<2>",
        }
        r = await h.post_webhook(make_payload([evil], externalURL="javascript:alert(3)//"))
        assert r.status_code == 200
        # A stored link that is not http(s) (from an older version, say) is not shown either.
        async with h.state.engine.begin() as conn:
            hostile = {"runbook": "javascript:alert(4)", "source": "data:,x"}
            await conn.execute(update(alerts).values(links=hostile, alertmanager_url="javascript:alert(5)//"))
        alert_id = (await h.client.get("/api/v1/alerts")).json()["items"][0]["id"]
        pages = [
            await _get(h, "/"),
            await _get(h, f"/alerts/{alert_id}"),
            await _get(h, "/", 400, matcher='<script>="x"'),
        ]
    for page in pages:
        lowered = page.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
        assert "javascript:" not in re.sub(r">[^<]*<", "><", lowered)  # never inside a tag (href or otherwise)
        assert 'onmouseover="' not in page and "<b>bold" not in page
    listing, detail, error = pages
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in listing
    assert "&lt;img src=x onerror=alert(1)&gt;" in listing
    assert "crit&#34;ical" in listing
    assert "&lt;/table&gt;&lt;iframe src=//evil.example&gt;" in detail
    assert "javascript:alert(document.cookie)" in detail  # shown as text ...
    assert 'href="javascript' not in detail.lower() and "silence" not in listing.split("<tbody>")[1]
    assert "a&#34; onmouseover=&#34;alert(1)" in detail
    assert "&lt;b&gt;bold&lt;/b&gt;" in detail
    # ... while an http(s) annotation is a link, its markup escaped inside the attribute too.
    assert 'href="https://docs.example.com/?a=1&amp;b=&lt;2&gt;"' in detail
    assert "&lt;script&gt;" in error


@pytest.mark.parametrize("path", ["/", "/alerts/1", "/?matcher=bad"])
async def test_token_required_when_configured(make_settings, start_app, path) -> None:  # type: ignore[no-untyped-def]
    async with start_app(make_settings(api_token="s3cret")) as h:
        assert (await h.post_webhook(load_payload("service-down-firing"))).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + _basic("u", "nope")}):
            r = await h.client.get(path, headers=headers)
            assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
            assert r.headers["www-authenticate"].startswith("Basic ")  # the browser asks for it
            assert "service-a is down" not in r.text and "Sign in required" in r.text
        expected = 400 if "matcher" in path else 200
        for auth in ("Bearer s3cret", "Basic " + _basic("anyone", "s3cret")):
            r = await h.client.get(path, headers={"Authorization": auth})
            assert r.status_code == expected, r.text
            assert "service-a is down" in r.text or expected == 400


async def test_no_token_needed_when_none_is_configured(harness) -> None:  # type: ignore[no-untyped-def]
    assert (await harness.client.get("/")).status_code == 200


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_templates_are_found_where_the_renderer_finds_its_own() -> None:
    for name in ("base.html.j2", "alerts.html.j2", "alert.html.j2"):
        assert (SHIPPED_TEMPLATES / "page" / name).is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("a=b", ["a=b"]),
        ('{a="x", b=~"y|z"}', ['a="x"', 'b=~"y|z"']),
        ('a="1,2" , b!=""', ['a="1,2"', 'b!=""']),
        (r'a="q\",r", c=d', [r'a="q\",r"', "c=d"]),
    ],
)
def test_split_matchers(text, expected) -> None:  # type: ignore[no-untyped-def]
    assert split_matchers(text) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (12, "12s"), (250, "4m 10s"), (7500, "2h 5m"), (3 * 86400 + 4 * 3600 + 59, "3d 4h"), (-5, "0s")],
)
def test_format_duration(seconds, expected) -> None:  # type: ignore[no-untyped-def]
    assert format_duration(timedelta(seconds=seconds)) == expected
