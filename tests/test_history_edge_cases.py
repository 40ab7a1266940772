"""The history API at the edges: times at the end of the calendar, code points next to the surrogates,
NUL characters in filters, and matchers on empty or absent labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import make_alert, make_payload

T0 = datetime(2026, 11, 29, 8, tzinfo=UTC)


async def _cases(h, **params) -> list[str]:  # type: ignore[no-untyped-def]
    """The `case` label of every alert the API returns for `params`, sorted."""
    r = await h.client.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    return sorted(a["labels"]["case"] for a in r.json()["items"])


async def _post(h, alerts: list[dict], **extra) -> None:  # type: ignore[no-untyped-def]
    assert (await h.post_webhook(make_payload(alerts, **extra))).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", "0001-01-01T00:00:00+01:00"),  # 0000-12-31T23:00:00Z
        ("until", "9999-12-31T23:59:59-01:00"),  # 10000-01-01T00:59:59Z
        ("since", "9999-12-31T23:30:00-00:31"),
    ],
)
async def test_times_outside_the_calendar_in_utc_are_400_naming_the_parameter(harness, name, value) -> None:  # type: ignore[no-untyped-def]
    r = await harness.client.get("/api/v1/alerts", params={name: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_query"
    assert name in error["message"]
    assert [d["loc"] for d in error["details"]] == [f"query.{name}"]


async def test_times_at_the_ends_of_the_calendar_in_utc_are_answered(harness) -> None:  # type: ignore[no-untyped-def]
    await _post(harness, [make_alert(case="a", starts_at=T0)])
    assert await _cases(harness, since="0001-01-01T00:00:00-01:00", until="9999-12-31T23:59:59+01:00") == ["a"]
    assert await _cases(harness, since="0001-01-01T00:00:00Z", until="9999-12-31T23:59:59Z") == ["a"]
    assert await _cases(harness, since="9999-12-31T23:59:59Z") == []


def test_prefix_end_skips_the_surrogates() -> None:
    from receiver.store.history import _prefix_end

    assert _prefix_end("pod-1") == "pod-2"
    assert _prefix_end("x\ud7ff") == "x\ue000"  # U+D800…U+DFFF are no characters
    assert _prefix_end("x\U0010ffff") is None  # nothing above the last code point: open range
    assert _prefix_end("") is None


@pytest.mark.parametrize("matcher", ['v=~"x\ud7ff.*"', 'v!~"x\ud7ff.*"', 'v=~"x\ud7fe.*"', 'v=~"x\ue000.*"'])
async def test_regex_prefix_next_to_the_surrogates(harness, matcher: str) -> None:  # type: ignore[no-untyped-def]
    from receiver.matchers import parse_matcher

    values = ["x\ud7fe", "x\ud7ff", "x\ud7ffa", "x\ud7ff\U0010ffff", "x\ue000", "x\ue000b", "x", "y"]
    alerts = [make_alert(case=f"c{i}", v=v, starts_at=T0 + timedelta(minutes=i)) for i, v in enumerate(values)]
    await _post(harness, alerts)
    m = parse_matcher(matcher)
    expected = sorted(a["labels"]["case"] for a in alerts if m.matches(a["labels"]))
    assert await _cases(harness, matcher=matcher) == expected


async def test_nul_in_filters_finds_what_the_webhook_stored(harness) -> None:  # type: ignore[no-untyped-def]
    """The webhook stores NUL as U+FFFD; filters with NUL look for that, on both databases alike."""
    nul = make_alert("a\x00b", case="nul", v="a\x00b", severity="s\x00", model="m\x00", team="t\x00")
    await _post(harness, [nul, make_alert("ab", case="plain", v="ab")], group_key="a\x00b")
    await _post(harness, [make_alert("other", case="other")], group_key="other")
    for params, expected in (
        ({"alertname": "a\x00b"}, ["nul"]),
        ({"severity": "s\x00"}, ["nul"]),
        ({"model": "m\x00"}, ["nul"]),
        ({"team": "t\x00"}, ["nul"]),
        ({"matcher": 'v="a\x00b"'}, ["nul"]),
        ({"matcher": 'v=~"a\x00.*"'}, ["nul"]),
        ({"matcher": 'v=~"(a\x00b)"'}, ["nul"]),
        ({"matcher": ['v!="a\x00b"', 'v!="ab"', 'v!=""']}, []),
    ):
        assert await _cases(harness, **params) == expected, params
    assert await _cases(harness, receiver="alert-receiver\x00") == []
    # NUL becomes U+FFFD before the regex compiles; a range that no longer holds is the client's error.
    r = await harness.client.get("/api/v1/alerts", params={"matcher": 'v=~"[\x00-a]"'})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_query", r.text
    r = await harness.client.get("/api/v1/receipts", params={"group_key": "a\x00b"})
    assert r.status_code == 200, r.text
    assert [item["group_key"] for item in r.json()["items"]] == ["a\ufffdb"]


EMPTY_VALUE_MATCHERS = [
    f"team{op}{value}"
    for op in ("=", "!=", "=~", "!~")
    for value in ('""', '"a"', '".*"', '".+"', '"a.*"', '"a|"', '"|b"', '"[ab]"')
    if op in ("=~", "!~") or value in ('""', '"a"', '".*"')
]


@pytest.mark.parametrize("matcher", EMPTY_VALUE_MATCHERS)
async def test_empty_label_values_are_absent_labels_as_in_alertmanager(harness, matcher: str) -> None:  # type: ignore[no-untyped-def]
    """Alertmanager (and our routing) treat team="" like no team label; the history API agrees."""
    from receiver.matchers import parse_matcher

    teams: list[dict[str, str]] = [{}, {"team": ""}, {"team": "a"}, {"team": "b"}, {"team": "ab"}, {"team": ".*"}]
    alerts = [make_alert(case=f"c{i}", starts_at=T0 + timedelta(minutes=i), **t) for i, t in enumerate(teams)]
    await _post(harness, alerts)
    m = parse_matcher(matcher)
    expected = sorted(a["labels"]["case"] for a in alerts if m.matches(a["labels"]))
    assert await _cases(harness, matcher=matcher) == expected
    # With a label-index driven equality matcher alongside: the same answer.
    assert await _cases(harness, matcher=[matcher, 'severity="warning"']) == expected


async def test_a_backtracking_regex_is_cut_off_with_a_400_and_the_server_answers_on(harness) -> None:  # type: ignore[no-untyped-def]
    """`(a+)+` against 40 a's and a `!` would backtrack for days; the budget stops it (matchers.values_matching)."""
    await _post(harness, [make_alert(case="long", v="a" * 40 + "!")])
    r = await harness.client.get("/api/v1/alerts", params={"matcher": 'v=~"(a+)+"'})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_query" and "took longer than" in r.json()["error"]["message"]
    page = await harness.client.get("/", params={"matcher": 'v=~"(a+)+"'})
    assert page.status_code == 400 and "took longer than" in page.text
    assert await _cases(harness, matcher='v=~"a+!"') == ["long"]  # an ordinary regex still answers


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ('pod=~"p.*"', [f"p{i}" for i in range(12)]),  # 12 values: compared with each alert's labels
        ('pod=~"p1.*"', ["p1", "p10", "p11"]),  # 3 values: looked up in the label index
        ('pod=~".*1"', ["p1", "p11"]),  # no literal prefix: over every value of the label
        ('pod!~"p1.*"', ["none", *[f"p{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8, 9)]]),
        ('pod!~"p.*"', ["none"]),
        ('pod=~"p.*|"', ["none", *[f"p{i}" for i in range(12)]]),  # "" matches: the alert without pod too
        ('pod=""', ["none"]),
        ('pod!=""', [f"p{i}" for i in range(12)]),
        ('nothere=""', ["none", *[f"p{i}" for i in range(12)]]),  # no alert has it: answered without looking
        ('nothere!=""', []),
    ],
)
async def test_regex_and_empty_matchers_agree_with_routing_on_every_path(harness, matcher: str, expected) -> None:  # type: ignore[no-untyped-def]
    """Matchers are answered by the label index or by each alert's labels column, by how many values
    match; either way the result is what routing's Matcher.matches gives."""
    alerts = [make_alert(case=f"p{i}", pod=f"p{i}", starts_at=T0 + timedelta(minutes=i)) for i in range(12)]
    alerts.append(make_alert(case="none", starts_at=T0 + timedelta(minutes=30)))
    await _post(harness, alerts)
    assert await _cases(harness, matcher=matcher, limit=50) == sorted(expected)
