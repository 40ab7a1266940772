"""Enrichment through the API, with the documented example config, on SQLite and PostgreSQL.

`model` (the catalog entry used) and `links` on /api/v1/alerts and /api/v1/alerts/{id}, the `team`
filter, /api/v1/models counts, catalog misses (stored, routed, counted in /metrics) and routing to the
recipients the example config names.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from receiver.config import load_settings
from receiver.store.tables import alerts as alerts_table
from tests.conftest import AppHarness
from tests.support import REPO, load_payload, make_alert, make_payload

FRAUD_MODEL = {
    "name": "fraud-detector",
    "version": "3.2.0",  # from the alert's model_version label; the catalog entry has none
    "owner": "alice@example.com",
    "slack": "alice@example.com",
    "team": "risk",
    "emails": ["fraud-models@example.com"],
    "runbook_url": "https://runbooks.example.com/fraud-detector",
    "extra": {"repository": "https://git.example.com/risk/fraud-detector", "tier": 1},
}
STARTS_MS = 1795970309410  # 2026-11-29T16:38:29.41Z, startsAt of the fixture
PADDING_MS = 30 * 60 * 1000


@pytest.fixture
async def h(db_url: str, start_app: Any) -> AsyncIterator[AppHarness]:
    """The receiver with receiver.example.yaml, on the parametrized database, dispatcher off."""
    settings = load_settings(REPO / "receiver.example.yaml", database_url=db_url, dispatch={"enabled": False})
    async with start_app(settings) as harness:
        yield harness


async def post(h: AppHarness, payload: dict[str, Any]) -> None:
    r = await h.post_webhook(payload)
    assert r.status_code == 200, r.text


async def alerts(h: AppHarness, **params: Any) -> list[dict[str, Any]]:
    r = await h.client.get("/api/v1/alerts", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def detail(h: AppHarness, alert_id: int) -> dict[str, Any]:
    r = await h.client.get(f"/api/v1/alerts/{alert_id}")
    assert r.status_code == 200, r.text
    return r.json()


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, strict_parsing=True)


async def test_alerts_carry_the_catalog_entry_and_links(h: AppHarness) -> None:
    await post(h, load_payload("ha-duplicate-peer-a"))
    items = await alerts(h)
    assert len(items) == 3
    amount = next(a for a in items if a["labels"]["feature"] == "amount")
    assert amount["model"] == FRAUD_MODEL
    links = amount["links"]
    assert sorted(links) == ["dashboard", "explore", "runbook", "silence", "source"]

    dashboard = urlsplit(links["dashboard"])
    assert (dashboard.scheme, dashboard.netloc, dashboard.path) == (
        "https",
        "grafana.example.com",
        "/d/fraud-detector/fraud-detector-overview",
    )
    assert query(links["dashboard"]) == {
        "orgId": ["1"],
        "from": [str(STARTS_MS - PADDING_MS)],
        "to": ["now"],
        "var-model": ["fraud-detector"],
        "var-version": ["3.2.0"],
        "var-namespace": ["ml-serving"],
        "var-datasource": ["prometheus"],
    }

    assert links["explore"].startswith("https://grafana.example.com/explore?")
    explore = query(links["explore"])
    assert (explore["schemaVersion"], explore["orgId"]) == (["1"], ["1"])
    assert json.loads(explore["panes"][0]) == {
        "a1b": {
            "datasource": "prometheus",
            "queries": [
                {
                    "refId": "A",
                    "expr": 'model_psi{model="fraud-detector"} > 0.2',
                    "datasource": {"type": "prometheus", "uid": "prometheus"},
                }
            ],
            "range": {"from": str(STARTS_MS - PADDING_MS), "to": "now"},
        }
    }

    silence = urlsplit(links["silence"])
    assert links["silence"].startswith("http://127.0.0.1:35507/#/silences/new?filter=")  # the payload's externalURL
    assert parse_qs(silence.fragment.partition("?")[2])["filter"] == [
        '{alertname="ModelPredictionDrift",feature="amount",model="fraud-detector",model_version="3.2.0",'
        'namespace="ml-serving",severity="warning"}'
    ]
    assert links["runbook"] == "https://runbooks.example.com/fraud-detector"  # the catalog's, not the annotation's
    assert links["source"] == load_payload("ha-duplicate-peer-a")["alerts"][0]["generatorURL"]

    one = await detail(h, amount["id"])
    assert (one["model"], one["links"]) == (amount["model"], amount["links"])


async def test_source_and_silence_links_are_built_when_read_and_not_stored(h: AppHarness) -> None:
    """The links column holds what depends on the catalog and settings; `source` and `silence` are built
    from the row's own columns on every read, and a row stored before migration 0005 (all five links
    in the column, no alertmanager_url) is shown with the links it was stored with."""
    await post(h, load_payload("ha-duplicate-peer-a"))
    async with h.state.engine.connect() as conn:
        columns = (alerts_table.c.id, alerts_table.c.links, alerts_table.c.alertmanager_url)
        stored = (await conn.execute(select(*columns))).all()
    assert len(stored) == 3
    assert {(tuple(sorted(links)), am_url) for _, links, am_url in stored} == {
        (("dashboard", "explore", "runbook"), "http://127.0.0.1:35507")
    }
    assert all(list(a["links"]) == ["source", "dashboard", "explore", "silence", "runbook"] for a in await alerts(h))

    older = {"source": "http://prometheus-old:9090/graph", "silence": "http://am-old:9093/#/silences/new?filter=%7B%7D"}
    async with h.state.engine.begin() as conn:
        await conn.execute(
            update(alerts_table).where(alerts_table.c.id == stored[0].id).values(links=older, alertmanager_url=None)
        )
    assert (await detail(h, stored[0].id))["links"] == older


async def test_the_resolving_payload_sets_the_silence_links_alertmanager(h: AppHarness) -> None:
    firing = make_alert("ServiceDown", model="churn")
    await post(h, make_payload([firing], externalURL="http://am-a.example:9093"))
    resolved = make_alert("ServiceDown", status="resolved", model="churn")
    await post(h, make_payload([resolved], externalURL="http://am-b.example:9093/"))
    (item,) = await alerts(h)
    assert item["status"] == "resolved"
    assert item["links"]["silence"].startswith("http://am-b.example:9093/#/silences/new?filter=%7B")


@pytest.mark.parametrize(
    ("version", "owner", "extra"),
    [("2.0.0", "dave@example.com", {"rollout": "canary"}), ("1.5.0", "carol@example.com", {})],
)
async def test_version_specific_catalog_entry(h: AppHarness, version: str, owner: str, extra: dict[str, str]) -> None:
    await post(h, make_payload([make_alert(model="churn-predictor", model_version=version, namespace="ml")]))
    [item] = await alerts(h)
    assert (item["model"]["owner"], item["model"]["version"], item["model"]["extra"]) == (owner, version, extra)
    # No dashboard in the catalog entry: the default dashboard, with model and namespace from the labels.
    assert urlsplit(item["links"]["dashboard"]).path == "/d/ml-models/ml-model-overview"
    assert query(item["links"]["dashboard"])["var-model"] == ["churn-predictor"]
    assert query(item["links"]["dashboard"])["var-namespace"] == ["ml"]


async def recipients(h: AppHarness, alert_id: int) -> set[tuple[str, str]]:
    return {(n["channel"], n["recipient"]) for n in (await detail(h, alert_id))["notifications"]}


def catalog_misses(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "receiver_catalog_misses_total":
                return sample.value
    raise AssertionError("receiver_catalog_misses_total is not exposed")


async def test_catalog_miss_is_stored_routed_and_counted(h: AppHarness) -> None:
    await post(h, load_payload("crd-unicode-nanoseconds"))  # model recommandé-ünïcode, critical, team=ranking
    await post(h, make_payload([make_alert(model="not-in-catalog")], group_key="miss"))  # a warning
    await post(h, load_payload("service-down-firing"))  # no model label: not a miss
    by_model = {a["labels"]["model"]: a for a in await alerts(h, matcher=['model!=""'])}
    unicode_miss, warning_miss = by_model["recommandé-ünïcode"], by_model["not-in-catalog"]
    assert unicode_miss["model"] is None and warning_miss["model"] is None
    # The links that need no catalog are still there; the runbook comes from the annotation.
    assert query(unicode_miss["links"]["dashboard"])["var-model"] == ["recommandé-ünïcode"]
    assert unicode_miss["links"]["runbook"] == "https://runbooks.example.com/latency"
    # critical: the critical route's `team` is the alert's team label; warning: the default route.
    assert await recipients(h, unicode_miss["id"]) == {("slack", "U0RANK0001"), ("email", "ranking-oncall@example.com")}
    assert await recipients(h, warning_miss["id"]) == {("email", "ml-oncall@example.com")}

    assert h.state.preparer.catalog_misses == 2
    assert catalog_misses((await h.client.get("/metrics")).text) == 2


async def test_service_down_reaches_the_admin_on_slack_and_email(h: AppHarness) -> None:
    await post(h, load_payload("service-down-firing"))
    [item] = await alerts(h)
    assert item["model"] is None
    assert await recipients(h, item["id"]) == {("slack", "admin@example.com"), ("email", "admin@example.com")}


async def test_team_filter_uses_the_catalog_team_then_the_team_label(h: AppHarness) -> None:
    await post(h, load_payload("ha-duplicate-peer-a"))  # fraud-detector: team risk from the catalog
    await post(h, load_payload("crd-unicode-nanoseconds"))  # not in the catalog, team=ranking label
    await post(h, load_payload("service-down-firing"))  # no team at all
    assert sorted(a["labels"]["feature"] for a in await alerts(h, team="risk")) == [
        "amount",
        "hour_of_day",
        "merchant_category",
    ]
    assert [a["labels"]["alertname"] for a in await alerts(h, team="ranking")] == ["ModelLatencyHigh"]
    assert await alerts(h, team="growth") == []
    await post(h, make_payload([make_alert(model="churn-predictor")], group_key="churn"))
    assert [a["labels"]["model"] for a in await alerts(h, team="growth")] == ["churn-predictor"]


async def test_models_lists_the_catalog_with_firing_and_resolved_counts(h: AppHarness) -> None:
    await post(h, load_payload("ha-duplicate-peer-a"))  # 3 firing
    await post(h, load_payload("drift-one-resolved"))  # one of them resolves
    await post(h, make_payload([make_alert(model="churn-predictor", model_version="2.0.0")], group_key="churn"))
    await post(h, load_payload("crd-unicode-nanoseconds"))
    r = await h.client.get("/api/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(m["name"], m.get("version"), m["alerts"]) for m in body["items"]] == [
        ("fraud-detector", None, {"firing": 2, "resolved": 1}),
        ("churn-predictor", "2.0.0", {"firing": 1, "resolved": 0}),  # counts are per model name
        ("churn-predictor", None, {"firing": 1, "resolved": 0}),
    ]
    assert body["items"][0]["owner"] == "alice@example.com"
    assert body["items"][0]["dashboard"]["uid"] == "fraud-detector"
    assert body["uncatalogued"] == {"recommandé-ünïcode": {"firing": 1, "resolved": 0}}
