"""The model catalog: hits and misses, version labels, models_file and its reload without a restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from receiver.catalog import ModelCatalog, load_models_file
from receiver.config import ModelEntry, Settings, load_settings
from receiver.ingest import Preparer
from receiver.schemas import WebhookPayload
from tests.support import make_alert, make_payload

MODELS = [
    ModelEntry(name="fraud-detector", owner="alice@example.com", team="risk"),
    # A version-specific entry listed before the version-less one: the latter still serves other versions.
    ModelEntry(name="churn", version="2.0.0", owner="dave@example.com"),
    ModelEntry(name="churn", owner="carol@example.com"),
    ModelEntry(name="ranker", version="1", owner="erin@example.com"),  # no version-less entry
]


@pytest.mark.parametrize(
    ("labels", "owner"),
    [
        ({"model": "fraud-detector"}, "alice@example.com"),
        ({"model": "fraud-detector", "model_version": "9.9"}, "alice@example.com"),
        ({"model": "churn", "model_version": "2.0.0"}, "dave@example.com"),
        ({"model": "churn", "model_version": "1.0.0"}, "carol@example.com"),
        ({"model": "churn"}, "carol@example.com"),
        ({"model": "ranker", "model_version": "2"}, "erin@example.com"),
        ({"model": "ranker"}, "erin@example.com"),
        ({"model": "unknown"}, None),
        ({"model": ""}, None),
        ({"model_version": "2.0.0"}, None),
        ({"app": "churn"}, None),
    ],
)
def test_lookup(labels: dict[str, str], owner: str | None) -> None:
    entry = ModelCatalog(MODELS).lookup(labels)
    assert (entry.owner if entry else None) == owner


def test_model_and_version_labels_are_configurable() -> None:
    catalog = ModelCatalog(MODELS, model_label="app", version_label="app_version")
    assert catalog.lookup({"app": "churn", "app_version": "2.0.0"}).owner == "dave@example.com"  # type: ignore[union-attr]
    assert catalog.lookup({"app": "churn", "model_version": "2.0.0"}).owner == "carol@example.com"  # type: ignore[union-attr]
    assert catalog.lookup({"model": "churn"}) is None


def write_models(path: Path, models: Any, *, bump: int | None = None) -> None:
    """Write a models file; `bump` then sets its mtime explicitly (to 2001-09-09 plus `bump` seconds)."""
    path.write_text(yaml.safe_dump(models), encoding="utf-8")
    if bump is not None:
        os.utime(path, (1_000_000_000 + bump, 1_000_000_000 + bump))


@pytest.mark.parametrize(
    "content",
    [
        [{"name": "m", "owner": "a@example.com"}],
        {"models": [{"name": "m", "owner": "a@example.com"}]},
    ],
    ids=["list", "mapping"],
)
def test_models_file_is_a_list_or_a_models_mapping(tmp_path: Path, content: Any) -> None:
    write_models(tmp_path / "models.yaml", content)
    assert [e.name for e in load_models_file(tmp_path / "models.yaml")] == ["m"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("[oops", "invalid YAML"),
        ("modles: []", "a mapping with only a `models:` list"),
        ("just text", "expected a list of models"),
        ("- name: m\n  owner: not-an-email", "is not an email address"),
        ("- owner: a@example.com", "name"),
    ],
)
def test_broken_models_file_at_start_is_an_error(tmp_path: Path, content: str, error: str) -> None:
    (tmp_path / "models.yaml").write_text(content, encoding="utf-8")
    with pytest.raises((ValueError, ValidationError), match=error):
        ModelCatalog([], models_file=tmp_path / "models.yaml")


def test_missing_models_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read models file"):
        ModelCatalog([], models_file=tmp_path / "missing.yaml")


def test_config_entries_come_first_and_win_over_the_file(tmp_path: Path) -> None:
    write_models(
        tmp_path / "models.yaml",
        [{"name": "fraud-detector", "owner": "zed@example.com"}, {"name": "extra", "owner": "x@example.com"}],
    )
    catalog = ModelCatalog(MODELS[:1], models_file=tmp_path / "models.yaml")
    assert [(e.name, e.owner) for e in catalog.entries] == [
        ("fraud-detector", "alice@example.com"),
        ("fraud-detector", "zed@example.com"),
        ("extra", "x@example.com"),
    ]
    assert catalog.lookup({"model": "fraud-detector"}).owner == "alice@example.com"  # type: ignore[union-attr]
    assert catalog.lookup({"model": "extra"}).owner == "x@example.com"  # type: ignore[union-attr]


def test_models_file_change_is_seen_by_the_next_lookup(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    write_models(path, [{"name": "m", "owner": "alice@example.com"}], bump=1)
    catalog = ModelCatalog([], models_file=path)
    assert catalog.lookup({"model": "m"}).owner == "alice@example.com"  # type: ignore[union-attr]
    write_models(path, [{"name": "m", "owner": "zoe@example.com"}, {"name": "n"}], bump=2)
    assert catalog.lookup({"model": "m"}).owner == "zoe@example.com"  # type: ignore[union-attr]
    assert [e.name for e in catalog.entries] == ["m", "n"]


def test_an_edit_within_the_same_mtime_is_seen_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    write_models(path, [{"name": "m", "owner": "al@example.com"}], bump=1)
    catalog = ModelCatalog([], models_file=path)
    write_models(path, [{"name": "m", "owner": "alice@example.com"}], bump=1)  # same mtime, longer file
    assert catalog.lookup({"model": "m"}).owner == "alice@example.com"  # type: ignore[union-attr]


def test_a_broken_edit_keeps_the_last_good_catalog_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "models.yaml"
    write_models(path, [{"name": "m", "owner": "alice@example.com"}], bump=1)
    catalog = ModelCatalog([], models_file=path)
    path.write_text("- name: m\n  owner: [broken", encoding="utf-8")
    os.utime(path, (1_000_000_002, 1_000_000_002))
    with caplog.at_level(logging.ERROR, logger="receiver.catalog"):
        for _ in range(3):
            assert catalog.lookup({"model": "m"}).owner == "alice@example.com"  # type: ignore[union-attr]
    assert len([r for r in caplog.records if "invalid" in r.getMessage()]) == 1
    path.unlink()
    assert catalog.lookup({"model": "m"}).owner == "alice@example.com"  # type: ignore[union-attr]
    write_models(path, [{"name": "m", "owner": "bob@example.com"}], bump=3)
    assert catalog.lookup({"model": "m"}).owner == "bob@example.com"  # type: ignore[union-attr]


async def test_models_file_reload_through_ingest_without_a_restart(tmp_path: Path, make_settings, start_app) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "models.yaml"
    write_models(path, [{"name": "fraud-detector", "owner": "alice@example.com", "team": "risk"}], bump=1)
    async with start_app(make_settings(models_file=path)) as h:
        first = make_payload([make_alert(model="fraud-detector", feature="a")], group_key="g1")
        assert (await h.post_webhook(first)).status_code == 200
        write_models(path, [{"name": "fraud-detector", "owner": "zoe@example.com", "team": "risk"}], bump=2)
        second = make_payload([make_alert(model="fraud-detector", feature="b")], group_key="g2")
        assert (await h.post_webhook(second)).status_code == 200

        items = (await h.client.get("/api/v1/alerts")).json()["items"]
        assert {a["labels"]["feature"]: a["model"]["owner"] for a in items} == {
            "a": "alice@example.com",
            "b": "zoe@example.com",
        }
        newest = (await h.client.get(f"/api/v1/alerts/{items[0]['id']}")).json()
        assert {(n["channel"], n["recipient"]) for n in newest["notifications"]} == {
            ("slack", "zoe@example.com"),
            ("email", "zoe@example.com"),  # the default route: owner
        }
        models = (await h.client.get("/api/v1/models")).json()["items"]
        assert [(m["name"], m["owner"]) for m in models] == [("fraud-detector", "zoe@example.com")]


def test_models_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write_models(tmp_path / "conf" / "models.yaml", [{"name": "m"}])
    (tmp_path / "conf" / "receiver.yaml").write_text("models_file: models.yaml\n", encoding="utf-8")
    settings = load_settings(tmp_path / "conf" / "receiver.yaml")
    assert settings.models_file == tmp_path / "conf" / "models.yaml"


# --- the Preparer: what ingest derives from the catalog --------------------------------------------------


def test_preparer_counts_catalog_misses_and_still_routes_them() -> None:
    default_route = {"slack": ["owner"], "email": ["owner", "oncall@example.com"]}
    settings = Settings(models=[MODELS[0]], default_route=default_route, teams={"risk": {"email": ["r@example.com"]}})
    preparer = Preparer.from_settings(settings, ModelCatalog(settings.models))
    payload = WebhookPayload.model_validate(
        make_payload(
            [
                make_alert(model="fraud-detector", model_version="3.2.0"),
                make_alert(model="not-in-catalog", team="ranking", feature="a"),
                make_alert(model="not-in-catalog", feature="b"),
                make_alert("ServiceDown", job="service-a"),  # no model label: not a miss
            ]
        )
    )
    hit, miss, miss2, no_model = preparer.prepare(payload).alerts
    assert preparer.catalog_misses == 2
    assert (hit.model, hit.team, hit.model_info["owner"], hit.model_info["version"]) == (  # type: ignore[index]
        "fraud-detector",
        "risk",
        "alice@example.com",
        "3.2.0",
    )
    assert hit.recipients == (
        ("slack", "alice@example.com"),
        ("email", "alice@example.com"),
        ("email", "oncall@example.com"),
    )
    assert (miss.model, miss.team, miss.model_info) == ("not-in-catalog", "ranking", None)
    assert miss.recipients == miss2.recipients == no_model.recipients == (("email", "oncall@example.com"),)
    assert no_model.model is None
