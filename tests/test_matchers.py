"""Alertmanager matcher semantics, as a table (cases follow Alertmanager's own matcher tests)."""

from __future__ import annotations

import pytest

from receiver.matchers import match_all, parse_matcher, parse_matchers

LABELS = {"alertname": "ModelDrift", "severity": "critical", "model": "fraud-detector", "empty": ""}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("severity=critical", True),
        ('severity="critical"', True),
        ("severity = critical", True),
        ("severity=warning", False),
        ("severity!=warning", True),
        ("severity!=critical", False),
        ('severity=~"warning|critical"', True),
        ("severity=~crit", False),  # anchored: a partial match is no match
        ("severity=~crit.*", True),
        ('severity!~"warning|critical"', False),
        ("team=", True),  # a missing label equals ""
        ('team=""', True),
        ('team!=""', False),
        ('model!=""', True),
        ("team=~.*", True),
        ("team=~.+", False),
        ("team!~.+", True),
        ("empty=", True),
        ('model=~"fraud-.*|churn"', True),
        ('alertname=~"(?i)modeldrift"', True),
    ],
)
def test_matcher_semantics(text: str, matches: bool) -> None:
    assert parse_matcher(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text",
    ["severity==critical", "=critical", "severity", 'severity=~"("', "1abc=x", 'severity="unterminated', "a=b=c"],
)
def test_invalid_matchers_are_rejected_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="invalid matcher"):
        parse_matcher(text)


def test_quoted_values_unescape() -> None:
    m = parse_matcher(r'summary="say \"hi\" \\ bye"')
    assert m.value == 'say "hi" \\ bye'
    assert parse_matcher(str(m)) == m


def test_match_all_needs_every_matcher() -> None:
    assert match_all(parse_matchers(["severity=critical", "model=~fraud-.*"]), LABELS)
    assert not match_all(parse_matchers(["severity=critical", "model=churn"]), LABELS)
    assert match_all([], LABELS)
