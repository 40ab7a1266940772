"""Links of an alert as read back: those stored at ingest (dashboard, Explore, runbook) and those built from
its columns (silence, source). Each URL is decoded and compared field by field."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit

import pytest

from receiver.config import GrafanaSettings, ModelEntry
from receiver.enrich import alertmanager_url, model_info, read_links, stored_links
from receiver.schemas import WebhookAlert
from tests.support import make_alert

# make_alert starts alerts at 2026-11-29T16:00:00Z; resolved ones end 5 minutes later.
MS_1530 = "1795966200000"  # 16:00 - 30m, the default padding
MS_1550 = "1795967400000"  # 16:00 - 10m
MS_1615 = "1795968900000"  # 16:05 + 10m
MS_1635 = "1795970100000"  # 16:05 + 30m
GRAFANA = GrafanaSettings(url="https://grafana.example.com/", datasource_uid="prom-main")
AM_URL = "http://alertmanager.monitoring:9093"
FRAUD = ModelEntry.model_validate(
    {
        "name": "fraud-detector",
        "owner": "alice@example.com",
        "team": "risk",
        "runbook_url": "https://runbooks.example.com/fraud-detector",
        "dashboard": {
            "uid": "fraud-uid",
            "slug": "fraud-overview",
            "variables": {"model": "{model}", "version": "{model_version}", "env": "production"},
        },
        "extra": {"tier": 1},
    }
)


def alert(status: str = "firing", *, annotations: dict[str, str] | None = None, **labels: str) -> WebhookAlert:
    raw = make_alert("ModelDrift", status=status, **labels)
    raw["annotations"].update(annotations or {})
    return WebhookAlert.model_validate(raw)


def links(
    a: WebhookAlert, entry: ModelEntry | None = FRAUD, grafana: GrafanaSettings = GRAFANA, external_url: str = AM_URL
) -> dict[str, str]:
    stored = stored_links(a, entry=entry, grafana=grafana, model_label="model")
    return read_links(
        stored, generator_url=a.generator_url, labels=a.labels, alertmanager_url=alertmanager_url(external_url)
    )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def silence_filter(url: str) -> str:
    """The `filter` of an Alertmanager `#/silences/new?filter=...` link, decoded."""
    route, _, query = urlsplit(url).fragment.partition("?")
    assert route == "/silences/new"
    return parse_qs(query, strict_parsing=True)["filter"][0]


# --- dashboard ---------------------------------------------------------------------------------------


def test_dashboard_of_a_firing_alert_runs_to_now_with_catalog_variables() -> None:
    url = links(alert(model="fraud-detector", model_version="3.2.0"))["dashboard"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "grafana.example.com", "/d/fraud-uid/fraud-overview")
    assert query_of(url) == {
        "orgId": ["1"],
        "from": [MS_1530],
        "to": ["now"],
        "var-model": ["fraud-detector"],
        "var-version": ["3.2.0"],
        "var-env": ["production"],  # a fixed value, not a label
    }


def test_dashboard_of_a_resolved_alert_ends_after_it_with_configured_padding_and_org() -> None:
    grafana = GrafanaSettings(url="https://grafana.example.com", org_id=7, time_padding="10m")
    url = links(alert("resolved", model="fraud-detector"), grafana=grafana)["dashboard"]
    query = query_of(url)
    assert (query["orgId"], query["from"], query["to"]) == (["7"], [MS_1550], [MS_1615])
    assert "var-version" not in query  # the alert has no model_version label: the variable is left out


def test_default_dashboard_copies_model_and_namespace_labels() -> None:
    grafana = GrafanaSettings(url="https://grafana.example.com", default_dashboard={"uid": "ml"})
    for entry in (None, FRAUD.model_copy(update={"dashboard": None})):
        url = links(alert("resolved", model="churn", namespace="ml-serving"), entry=entry, grafana=grafana)["dashboard"]
        assert urlsplit(url).path == "/d/ml"  # no slug, no trailing slash
        assert query_of(url) == {
            "orgId": ["1"],
            "from": [MS_1530],
            "to": [MS_1635],
            "var-model": ["churn"],
            "var-namespace": ["ml-serving"],
        }


def test_no_dashboard_without_one_configured_and_no_grafana_links_without_grafana_url() -> None:
    assert "dashboard" not in links(alert(model="churn"), entry=None)
    assert "explore" in links(alert(model="churn"), entry=None)
    assert set(links(alert(model="fraud-detector"), grafana=GrafanaSettings())) == {"source", "silence", "runbook"}


# --- explore -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected_range"),
    [("firing", {"from": MS_1530, "to": "now"}), ("resolved", {"from": MS_1530, "to": MS_1635})],
)
def test_explore_runs_the_alerts_promql_on_the_configured_datasource(
    status: str, expected_range: dict[str, str]
) -> None:
    url = links(alert(status, model="fraud-detector"))["explore"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "grafana.example.com", "/explore")
    query = query_of(url)
    assert sorted(query) == ["orgId", "panes", "schemaVersion"]
    assert (query["schemaVersion"], query["orgId"]) == (["1"], ["1"])
    assert json.loads(query["panes"][0]) == {
        "a1b": {
            "datasource": "prom-main",
            "queries": [
                {"refId": "A", "expr": "model_psi > 0.2", "datasource": {"type": "prometheus", "uid": "prom-main"}}
            ],
            "range": expected_range,  # strings, as Grafana requires
        }
    }


def test_explore_keeps_promql_with_quotes_braces_and_unicode_intact() -> None:
    expr = 'histogram_quantile(0.99, rate(lat_bucket{model="recommandé & co"}[5m])) > 2'
    raw = make_alert("Latency", model="x")
    raw["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote_plus(expr)}&g0.tab=1"
    url = links(WebhookAlert.model_validate(raw), entry=None)["explore"]
    assert url.isascii() and " " not in url
    pane = json.loads(query_of(url)["panes"][0])["a1b"]
    assert pane["queries"][0]["expr"] == expr


@pytest.mark.parametrize("generator_url", ["", "http://vm:8428/vmalert/alert?group_id=1", "http://prom/graph?g0.tab=1"])
def test_no_explore_link_without_promql(generator_url: str) -> None:
    raw = make_alert(model="churn")
    raw["generatorURL"] = generator_url
    assert "explore" not in links(WebhookAlert.model_validate(raw), entry=None)


# --- silence -----------------------------------------------------------------------------------------


def test_silence_link_prefills_every_label_in_name_order() -> None:
    url = links(alert(model="fraud-detector", namespace="ml-serving"))["silence"]
    assert url.startswith(f"{AM_URL}/#/silences/new?filter=")
    assert silence_filter(url) == (
        '{alertname="ModelDrift",model="fraud-detector",namespace="ml-serving",severity="warning"}'
    )


@pytest.mark.parametrize("external_url", ["", "/alertmanager", "alertmanager:9093", "javascript:alert(1)"])
def test_no_silence_link_without_an_absolute_http_external_url(external_url: str) -> None:
    assert "silence" not in links(alert(model="churn"), external_url=external_url)


# --- URL encoding of label values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "in_filter"),
    [
        ("a&b=c", "a&b=c"),
        ('say "hi"', 'say \\"hi\\"'),
        ("two words", "two words"),
        ("recommandé-ünïcode 🚨", "recommandé-ünïcode 🚨"),
        ("50%+1", "50%+1"),
        ("x#y?z", "x#y?z"),
        ("back\\slash", "back\\\\slash"),
        ("line\nbreak", "line\\nbreak"),
    ],
)
def test_label_values_are_url_encoded_in_dashboard_vars_and_silence_filter(value: str, in_filter: str) -> None:
    built = links(
        alert(model=value, namespace=value),
        entry=None,
        grafana=GrafanaSettings(url="https://g.example.com", default_dashboard={"uid": "ml"}),
    )
    for url in built.values():
        assert url.isascii() and not any(ch in url for ch in ' "\n'), url
    dashboard = built["dashboard"]
    # Every & in the query separates a parameter: orgId, from, to, var-model, var-namespace.
    assert len(urlsplit(dashboard).query.split("&")) == 5
    assert query_of(dashboard)["var-model"] == [value]
    assert query_of(dashboard)["var-namespace"] == [value]
    assert "+" not in urlsplit(dashboard).query  # spaces are %20, which every decoder reads as a space
    assert urlsplit(built["silence"]).fragment.count("?") == 1  # a ? or # in a value is escaped
    assert silence_filter(built["silence"]) == (
        f'{{alertname="ModelDrift",model="{in_filter}",namespace="{in_filter}",severity="warning"}}'
    )
    assert unquote(urlsplit(built["silence"]).fragment).endswith('severity="warning"}')


# --- runbook and the http(s)-only rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("catalog", "annotation", "expected"),
    [
        ("https://runbooks.example.com/cat", "https://runbooks.example.com/ann", "https://runbooks.example.com/cat"),
        (None, "https://runbooks.example.com/ann", "https://runbooks.example.com/ann"),
        (None, "http://wiki.internal/runbook", "http://wiki.internal/runbook"),
        (None, "javascript:alert(document.cookie)", None),
        (None, "JavaScript:alert(1)", None),
        (None, " javascript:alert(1)", None),
        (None, "java\tscript:alert(1)", None),
        (None, "data:text/html,<script>alert(1)</script>", None),
        (None, "/runbooks/model-drift", None),
        (None, "runbooks/model-drift", None),
        (None, "//evil.example.com/runbook", None),
        (None, "https:///no-host", None),
        (None, "ftp://files.example.com/runbook", None),
        (None, "https://runbooks.example.com/a b", None),
        (None, "", None),
        # defence in depth: a catalog value that bypassed config validation is skipped too
        ("javascript:alert(1)", "https://runbooks.example.com/ann", "https://runbooks.example.com/ann"),
    ],
)
def test_runbook_is_the_catalogs_then_the_annotations_and_only_ever_http(
    catalog: str | None, annotation: str, expected: str | None
) -> None:
    entry = ModelEntry.model_construct(name="m", runbook_url=catalog, dashboard=None)
    built = links(alert(model="m", annotations={"runbook_url": annotation}), entry=entry)
    assert built.get("runbook") == expected


@pytest.mark.parametrize(
    "generator_url", ["javascript:alert(1)", "/graph?g0.expr=up", "http://prom:9090/graph?g0.expr=up"]
)
def test_source_link_is_the_generator_url_only_when_http(generator_url: str) -> None:
    raw = make_alert(model="m")
    raw["generatorURL"] = generator_url
    built = links(WebhookAlert.model_validate(raw), entry=None)
    assert built.get("source") == (generator_url if generator_url.startswith("http") else None)


# --- model_info --------------------------------------------------------------------------------------


def test_model_info_is_the_entry_without_dashboard_and_with_the_alerts_version() -> None:
    labels = {"model": "fraud-detector", "model_version": "3.2.0"}
    assert model_info(FRAUD, labels, "model_version") == {
        "name": "fraud-detector",
        "version": "3.2.0",
        "owner": "alice@example.com",
        "team": "risk",
        "emails": [],
        "runbook_url": "https://runbooks.example.com/fraud-detector",
        "extra": {"tier": 1},
    }
    assert "version" not in model_info(FRAUD, {"model": "fraud-detector"}, "model_version")  # type: ignore[operator]
    assert model_info(None, labels, "model_version") is None


@pytest.mark.parametrize(
    "value",
    ["plain", "a b&c=d/e?f#g", 'x"y\\z', "ünïcode 🚨", "%2F+", "", "~._-", "\n\t\x00", '{a="b", c=~"d|e"}'],
)
def test_url_quote_matches_urllib(value: str) -> None:
    from urllib.parse import quote

    from receiver.enrich import url_quote

    assert url_quote(value) == quote(value, safe="")
