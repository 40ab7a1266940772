"""The alert history as HTML pages for people: `/` (the list with filters) and `/alerts/{id}`.

Server-rendered with the Jinja2 environment of `receiver.render` (autoescaped `.html.j2`
templates under `templates/page/`), no JavaScript and no external assets, so the page works
offline and under a Content-Security-Policy that forbids scripts. It reads through the same store
functions, matcher parser, cursor encoding and token check as the JSON API; its errors (bad
matcher, bad cursor, missing token, unknown alert) are HTML pages with the right status, not JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from receiver.api.errors import InvalidQuery, Unauthorized
from receiver.api.history import api_auth, decode_cursor, encode_cursor, in_utc
from receiver.enrich import is_http_url
from receiver.matchers import Matcher, RegexTooSlow
from receiver.render import LINK_TITLES, template_env
from receiver.store import history

router = APIRouter(tags=["page"], include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LIST_LINKS = ("dashboard", "explore", "runbook", "silence")
TEXT_FILTERS = ("alertname", "severity", "model", "team", "receiver")
STATUSES = ("firing", "resolved")

# No scripts at all; inline styles only; images only as data: URIs (the favicon); forms post back here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=4)
def _env(templates_dir: Path | None) -> jinja2.Environment:
    """The notification renderer's environment (shipped templates, `templates_dir` overrides first)."""
    env = template_env(templates_dir)
    env.filters["duration"] = format_duration
    env.filters["http_url"] = lambda url: url if isinstance(url, str) and is_http_url(url) else None
    env.globals["link_titles"] = LINK_TITLES
    return env


def format_duration(delta: timedelta | None) -> str:
    """`3d 4h`, `2h 5m`, `4m 10s`, `12s`: the two largest units."""
    if delta is None:
        return ""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def split_matchers(text: str) -> list[str]:
    """`{a="x", b=~"y|z"}` or `a="x", b=~"y|z"` -> ['a="x"', 'b=~"y|z"']: commas inside quotes stay."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _render(
    request: Request, name: str, status: int = 200, headers: Mapping[str, str] | None = None, **ctx: Any
) -> HTMLResponse:
    env = _env(request.app.state.receiver.settings.templates_dir)
    html = env.get_template(f"page/{name}").render(now=datetime.now(UTC), **ctx)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _check_token(request: Request) -> HTMLResponse | None:
    """The JSON API's token check; a 401 page asking for Basic auth (browsers prompt for it) on failure."""
    try:
        api_auth(request)
    except Unauthorized as exc:
        challenge = {"WWW-Authenticate": 'Basic realm="alert-receiver", charset="UTF-8"'}
        return _render(request, "base.html.j2", 401, challenge, title="Sign in required", message=exc.message)
    return None


def _error(request: Request, status: int, title: str, message: str, **ctx: Any) -> HTMLResponse:
    return _render(request, "base.html.j2", status, title=title, message=message, **ctx)


def _one(request: Request, name: str) -> str | None:
    """A query parameter; the empty string an untouched form field sends counts as absent."""
    value = request.query_params.get(name, "").strip()
    return value or None


def _url(path: str, params: Mapping[str, Any]) -> str:
    """`path?query` from the set params (lists repeat the name), so filters survive paging."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            if item not in (None, ""):
                pairs.append((name, str(item)))
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _parse_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(f"{name} {value!r} is not an RFC 3339 time such as 2026-11-29T16:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else in_utc(name, moment)


@router.get("/", response_class=HTMLResponse, summary="Alert history page")
async def alerts_page(request: Request) -> HTMLResponse:
    denied = _check_token(request)
    if denied is not None:
        return denied
    state = request.app.state.receiver
    q = request.query_params
    form: dict[str, Any] = {name: _one(request, name) for name in ("status", *TEXT_FILTERS, "since", "until")}
    matcher_texts = [m for m in q.getlist("matcher") if m.strip()]
    form["matcher"] = ", ".join(m.strip() for m in matcher_texts)
    cursor = _one(request, "cursor")
    ctx: dict[str, Any] = {
        "form": form,
        "statuses": STATUSES,
        "models": sorted(e.name for e in state.catalog.entries),
        "alerts": [],
        "older_url": None,
        "newest_url": None,
        "error": None,
    }
    try:
        if form["status"] is not None and form["status"] not in STATUSES:
            raise InvalidQuery(f"status {form['status']!r} is not one of: {', '.join(STATUSES)}")
        matchers: list[Matcher] = []
        for text in matcher_texts:
            try:
                matchers += [history.query_matcher(m) for m in split_matchers(text)]
            except ValueError as exc:
                raise InvalidQuery(str(exc)) from None
        raw_limit = _one(request, "limit")
        try:
            limit = int(raw_limit) if raw_limit is not None else PAGE_SIZE
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidQuery(f"limit {raw_limit!r} must be a whole number from 1 to {MAX_PAGE_SIZE}")
        filters = history.AlertFilter(
            status=form["status"],
            alertname=form["alertname"],
            severity=form["severity"],
            model=form["model"],
            team=form["team"],
            receiver=form["receiver"],
            since=_parse_time("since", form["since"]),
            until=_parse_time("until", form["until"]),
            matchers=matchers,
            model_label=state.settings.model_label,
        )
        before = decode_cursor("a", cursor)
    except InvalidQuery as exc:
        ctx["error"] = exc.message
        return _render(request, "alerts.html.j2", exc.status, **ctx)

    async with state.engine.connect() as conn:
        try:
            rows, last = await history.list_alerts(conn, filters, limit=limit, before_id=before)
        except RegexTooSlow as exc:
            ctx["error"] = str(exc)
            return _render(request, "alerts.html.j2", 400, **ctx)
    keep = {**{k: v for k, v in form.items() if k != "matcher"}, "matcher": matcher_texts}
    if limit != PAGE_SIZE:
        keep["limit"] = limit
    next_cursor = encode_cursor("a", last)
    ctx["alerts"] = rows
    ctx["older_url"] = _url("/", {**keep, "cursor": next_cursor}) if next_cursor else None
    ctx["newest_url"] = _url("/", keep) if cursor else None
    ctx["filtered"] = any(v for k, v in keep.items() if k != "limit")
    return _render(request, "alerts.html.j2", **ctx)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse, summary="One alert page")
async def alert_page(request: Request, alert_id: str) -> HTMLResponse:
    denied = _check_token(request)
    if denied is not None:
        return denied
    row = None
    if alert_id.isascii() and alert_id.isdigit() and len(alert_id) < 19:  # fits a BIGINT
        async with request.app.state.receiver.engine.connect() as conn:
            row = await history.get_alert(conn, int(alert_id))
    if row is None:
        return _error(request, 404, "Alert not found", f"There is no alert with id {alert_id}.")
    return _render(request, "alert.html.j2", alert=row)
