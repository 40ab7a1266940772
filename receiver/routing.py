"""Who hears about an alert: Alertmanager-style matchers over labels, resolved through the catalog.

A pure function of (labels, catalog entry, routes): routes are tried in order, the first match wins
unless it says `continue: true`, and the default route applies when none matched, or when the routes
that matched name nobody this alert resolves to (`owner` of a model missing from the catalog), so such
an alert still reaches someone. `team` is the catalog entry's team, else the alert's `team` label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from receiver.config import ModelEntry, Recipients, Route, Team
from receiver.matchers import Matcher, match_all, parse_matchers

CHANNELS = ("slack", "email")
# Where alerts go that no route addresses to anyone: visible in the log and the notifications API.
UNROUTED = ("log", "unrouted")


@dataclass(frozen=True)
class CompiledRoute:
    name: str
    matchers: tuple[Matcher, ...]
    recipients: Route
    continue_: bool


def compile_routes(routes: Sequence[Route]) -> list[CompiledRoute]:
    """Parse each route's matchers once, at start."""
    return [
        CompiledRoute(r.name or f"routes[{i}]", tuple(parse_matchers(r.matchers)), r, r.continue_)
        for i, r in enumerate(routes)
    ]


def matching_routes(routes: Sequence[CompiledRoute], labels: Mapping[str, str]) -> list[CompiledRoute]:
    """The routes an alert takes, in order."""
    taken = []
    for route in routes:
        if match_all(route.matchers, labels):
            taken.append(route)
            if not route.continue_:
                break
    return taken


def resolve(token: str, channel: str, entry: ModelEntry | None, team: Team | None) -> list[str]:
    """Turn `owner`, `team` or a literal address into concrete recipients for one channel."""
    if token == "owner":
        if entry is None:
            return []
        if channel == "slack":
            return [entry.slack or entry.owner] if (entry.slack or entry.owner) else []
        return [a for a in [entry.owner, *entry.emails] if a]
    if token == "team":
        return list(getattr(team, channel)) if team else []
    return [token]


def _addresses(taken: Sequence[Recipients], entry: ModelEntry | None, team: Team | None) -> tuple[tuple[str, str], ...]:
    found: dict[tuple[str, str], None] = {}
    for recipients in taken:
        for channel in CHANNELS:
            for token in getattr(recipients, channel):
                for address in resolve(token, channel, entry, team):
                    found[(channel, address)] = None
    return tuple(found)


def recipients_for(
    labels: Mapping[str, str],
    entry: ModelEntry | None,
    routes: Sequence[CompiledRoute],
    default: Recipients,
    teams: Mapping[str, Team],
) -> tuple[tuple[str, str], ...]:
    """Ordered, de-duplicated (channel, recipient) pairs for one alert."""
    team_name = (entry.team if entry else None) or labels.get("team")
    team = teams.get(team_name) if team_name else None
    matched = matching_routes(routes, labels)
    if matched and not any(r.recipients.notify for r in matched):
        return ()  # a silent route: stored, never notified
    taken = [r.recipients for r in matched if r.recipients.notify]
    found = _addresses(taken, entry, team) if taken else ()
    return found or _addresses([default], entry, team) or (UNROUTED,)
