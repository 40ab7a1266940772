"""Routing as a pure function: route order, `continue`, the default route, owner/team resolution."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.config import ModelEntry, Recipients, Route, Team, load_settings
from receiver.routing import UNROUTED, compile_routes, matching_routes, recipients_for
from tests.support import REPO

ROUTES = compile_routes(
    [
        Route.model_validate(r)
        for r in [
            {
                "name": "critical",
                "matchers": ['severity="critical"'],
                "slack": ["owner", "team"],
                "email": ["owner"],
                "continue": True,
            },
            {
                "name": "service-down",
                "matchers": ["alertname=ServiceDown"],
                "slack": ["admin@example.com"],
                "email": ["admin@example.com"],
            },
            {"name": "fraud", "matchers": ['model=~"fraud-.*"'], "slack": ["U0123ABCD"]},
            {"matchers": ["severity=critical"], "email": ["late@example.com"]},  # reached only past `continue`
        ]
    ]
)
DEFAULT = Recipients(slack=["owner"], email=["owner", "oncall@example.com"])
TEAMS = {
    "risk": Team(slack=["bob@example.com"], email=["risk@example.com"]),
    "ranking": Team(slack=["U0RANK0001"], email=["ranking@example.com"]),
}
FRAUD = ModelEntry(
    name="fraud-detector",
    owner="alice@example.com",
    slack="U0ALICE01",
    team="risk",
    emails=["fraud-models@example.com"],
)
CHURN = ModelEntry(name="churn", owner="carol@example.com", team="risk")  # no slack: the owner's email serves
BOB_OWNS = ModelEntry(name="ranker", owner="bob@example.com", team="risk")  # bob is also in team risk


def labels(alertname: str = "ModelDrift", severity: str = "warning", **more: str) -> dict[str, str]:
    return {"alertname": alertname, "severity": severity, **more}


@pytest.mark.parametrize(
    ("alert_labels", "entry", "expected"),
    [
        pytest.param(
            labels("ServiceDown", "critical", job="service-a"),
            None,
            [("slack", "admin@example.com"), ("email", "admin@example.com")],
            id="continue-past-critical-then-first-match-stops",
        ),
        pytest.param(
            labels(severity="critical", model="fraud-detector"),
            FRAUD,
            [
                ("slack", "U0ALICE01"),
                ("slack", "bob@example.com"),
                ("email", "alice@example.com"),
                ("email", "fraud-models@example.com"),
                ("slack", "U0123ABCD"),
            ],
            id="owner-and-team-then-fraud-route-and-stop-before-the-last",
        ),
        pytest.param(labels(model="fraud-detector"), FRAUD, [("slack", "U0123ABCD")], id="only-the-fraud-route"),
        pytest.param(
            labels(model="churn"),
            CHURN,
            [("slack", "carol@example.com"), ("email", "carol@example.com"), ("email", "oncall@example.com")],
            id="no-route-default-owner-slack-falls-back-to-owner-email",
        ),
        pytest.param(
            labels(model="not-in-catalog"),
            None,
            [("email", "oncall@example.com")],
            id="catalog-miss-default-literal-only",
        ),
        pytest.param(
            labels(severity="critical", model="not-in-catalog", team="ranking"),
            None,
            [("slack", "U0RANK0001"), ("email", "late@example.com")],
            id="catalog-miss-team-from-label",
        ),
        pytest.param(
            labels(severity="critical", model="not-in-catalog"),
            None,
            [("email", "late@example.com")],
            id="catalog-miss-no-team-later-route-still-applies",
        ),
        pytest.param(
            labels(severity="critical", model="ranker"),
            BOB_OWNS,
            [("slack", "bob@example.com"), ("email", "bob@example.com"), ("email", "late@example.com")],
            id="owner-who-is-also-in-the-team-is-listed-once",
        ),
        pytest.param(
            labels(severity="critical", model="churn", team="ranking"),
            CHURN,
            [
                ("slack", "carol@example.com"),
                ("slack", "bob@example.com"),
                ("email", "carol@example.com"),
                ("email", "late@example.com"),
            ],
            id="catalog-team-wins-over-label",
        ),
    ],
)
def test_recipients(alert_labels: dict[str, str], entry: ModelEntry | None, expected: list[tuple[str, str]]) -> None:
    assert list(recipients_for(alert_labels, entry, ROUTES, DEFAULT, TEAMS)) == expected


@pytest.mark.parametrize(
    ("alert_labels", "taken"),
    [
        (labels(), []),
        (labels("ServiceDown", "critical"), ["critical", "service-down"]),
        (labels(severity="critical", model="fraud-x"), ["critical", "fraud"]),
        (labels(severity="critical"), ["critical", "routes[3]"]),  # unnamed routes are named by position
        (labels("ServiceDown", model="fraud-x"), ["service-down"]),  # first match wins: fraud is not reached
    ],
)
def test_route_order_and_continue(alert_labels: dict[str, str], taken: list[str]) -> None:
    assert [r.name for r in matching_routes(ROUTES, alert_labels)] == taken


def test_matched_routes_that_resolve_to_nobody_fall_back_to_the_default_route() -> None:
    routes = compile_routes([Route(matchers=["severity=critical"], slack=["owner"], email=["team"])])
    got = recipients_for(labels(severity="critical", model="unknown"), None, routes, DEFAULT, TEAMS)
    assert got == (("email", "oncall@example.com"),)


def test_nobody_at_all_is_unrouted_rather_than_dropped() -> None:
    assert recipients_for(labels(), None, [], Recipients(slack=["owner"]), TEAMS) == (UNROUTED,)
    assert recipients_for(labels(), None, [], Recipients(), {}) == (UNROUTED,)


def test_team_that_is_not_defined_resolves_to_nobody() -> None:
    entry = ModelEntry(name="m", team="ghosts")
    routes = compile_routes([Route(slack=["team"], email=["team", "ops@example.com"])])
    assert recipients_for(labels(model="m"), entry, routes, DEFAULT, TEAMS) == (("email", "ops@example.com"),)


# The seed example, through the documented example config: ServiceDown reaches the admin on both channels.
EXAMPLE = load_settings(REPO / "receiver.example.yaml")
EXAMPLE_ENTRIES = {(e.name, e.version): e for e in EXAMPLE.models}


@pytest.mark.parametrize(
    ("alert_labels", "entry_key", "expected"),
    [
        (
            labels("ServiceDown", "critical", job="service-a"),
            None,
            [("slack", "admin@example.com"), ("email", "admin@example.com")],
        ),
        (
            labels(severity="critical", model="fraud-detector"),
            ("fraud-detector", None),
            [
                ("slack", "alice@example.com"),
                ("slack", "bob@example.com"),
                ("slack", "U0RISK0001"),
                ("email", "alice@example.com"),
                ("email", "fraud-models@example.com"),
                ("email", "risk-oncall@example.com"),
            ],
        ),
        (
            labels(model="fraud-detector", model_version="3.2.0"),
            ("fraud-detector", None),
            [
                ("slack", "alice@example.com"),
                ("email", "alice@example.com"),
                ("email", "fraud-models@example.com"),
                ("email", "ml-oncall@example.com"),
            ],
        ),
        (
            labels(model="churn-predictor", model_version="2.0.0"),
            ("churn-predictor", "2.0.0"),
            [("slack", "U0DAVE0001")],
        ),
        (labels(model="unknown-model"), None, [("email", "ml-oncall@example.com")]),
    ],
)
def test_example_config_routes(alert_labels: dict[str, str], entry_key: Any, expected: list[tuple[str, str]]) -> None:
    entry = EXAMPLE_ENTRIES[entry_key] if entry_key else None
    routes = compile_routes(EXAMPLE.routes)
    assert list(recipients_for(alert_labels, entry, routes, EXAMPLE.default_route, EXAMPLE.teams)) == expected


def test_a_silent_route_stores_but_notifies_nobody() -> None:
    routes = compile_routes(
        [
            Route(name="heartbeat", matchers=['alertname="Watchdog"'], notify=False),
            Route(matchers=["severity=critical"], slack=["oncall@example.com"]),
        ]
    )
    default = Recipients(slack=["admin@example.com"])
    assert recipients_for({"alertname": "Watchdog"}, None, routes, default, {}) == ()
    assert recipients_for({"alertname": "X", "severity": "critical"}, None, routes, default, {}) == (
        ("slack", "oncall@example.com"),
    )
