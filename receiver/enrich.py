"""Context for the person who gets the alert: model metadata and links.

Pure functions of the alert, the catalog entry and settings. What depends on the catalog or settings
(model metadata, Grafana and runbook links) is built once at ingest and stored with the alert, so
history shows what was sent. The links that depend only on the alert's own columns (`source` from
its generatorURL, `silence` from its labels and Alertmanager's URL) are rebuilt whenever the alert is
read (`read_links`): storing them cost a quarter of the ingest path's work for data the row already
holds (a silence link repeats every label, percent-encoded).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from receiver.config import DashboardRef, GrafanaSettings, ModelEntry
from receiver.schemas import WebhookAlert

_UNSAFE_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")
# Percent-encoding of everything but RFC 3986's unreserved characters, as quote(value, safe="") does.
# urllib's quote walks byte by byte in Python; for ASCII text, str.translate does the same in C, which
# matters because every alert of a storm gets several links built on the webhook's hot path.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ASCII_QUOTES = {code: f"%{code:02X}" for code in range(128) if chr(code) not in _UNRESERVED}


def url_quote(value: str) -> str:
    """Percent-encode a URL component (path segment or query value); '/' is encoded too."""
    return value.translate(_ASCII_QUOTES) if value.isascii() else quote(value, safe="")


def url_encode(params: Iterable[tuple[str, str]]) -> str:
    """A query string with every key and value percent-encoded (spaces as %20, never '+')."""
    return "&".join(f"{url_quote(key)}={url_quote(value)}" for key, value in params)


def is_http_url(url: str | None) -> bool:
    """Only http(s) links are ever emitted: no javascript:, data: or relative surprises."""
    return bool(url) and _is_http_url(url)  # type: ignore[arg-type]


@lru_cache(maxsize=4096)  # the alerts of one rule share their generatorURL and runbook
def _is_http_url(url: str) -> bool:
    if _UNSAFE_IN_URL.search(url):  # urlsplit would strip these silently
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def model_info(entry: ModelEntry | None, labels: Mapping[str, str], version_label: str) -> dict[str, Any] | None:
    """The catalog entry as stored with the alert; the alert's version label wins over the catalog's."""
    if entry is None:
        return None
    info = entry.model_dump(exclude={"dashboard"}, exclude_none=True)
    if labels.get(version_label):
        info["version"] = labels[version_label]
    return info


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def time_range(alert: WebhookAlert, grafana: GrafanaSettings) -> tuple[str, str]:
    """(from, to) in epoch ms around the alert; a firing alert's range ends at 'now'."""
    start = str(_ms(_shifted(alert.starts_at, -grafana.time_padding)))
    end = str(_ms(_shifted(alert.ends_at, grafana.time_padding))) if alert.ends_at else "now"
    return start, end


def _shifted(moment: datetime, delta: timedelta) -> datetime:
    """moment + delta, held at the first or last representable time (an alert dated year 1 or 9999)."""
    try:
        return moment + delta
    except OverflowError:
        return (datetime.min if delta < timedelta(0) else datetime.max).replace(tzinfo=moment.tzinfo)


def dashboard_link(alert: WebhookAlert, dashboard: DashboardRef, grafana: GrafanaSettings, model_label: str) -> str:
    """`/d/<uid>/<slug>?orgId=&from=&to=&var-…` with variables from the mapping or the model labels."""
    start, end = time_range(alert, grafana)
    params: list[tuple[str, str]] = [("orgId", str(grafana.org_id)), ("from", start), ("to", end)]
    variables = dashboard.variables or {"model": "{" + model_label + "}", "namespace": "{namespace}"}
    for var, source in variables.items():
        value = _fill(source, alert.labels)
        if value:
            params.append((f"var-{var}", value))
    path = f"/d/{url_quote(dashboard.uid)}/{url_quote(dashboard.slug)}".rstrip("/")
    # %20, not '+': a + is a space only to form decoders; %20 is one to every decoder.
    return f"{grafana.url.rstrip('/')}{path}?{url_encode(params)}"


def _fill(source: str, labels: Mapping[str, str]) -> str:
    """`{label}` copies a label's value; anything else is a fixed value."""
    if source.startswith("{") and source.endswith("}"):
        return labels.get(source[1:-1], "")
    return source


@lru_cache(maxsize=1024)  # the alerts of one rule share their generatorURL
def alert_expr(generator_url: str) -> str | None:
    """The PromQL behind a Prometheus alert, from its generatorURL's g0.expr."""
    if not generator_url:
        return None
    values = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    return values[0] if values else None


def explore_link(alert: WebhookAlert, grafana: GrafanaSettings) -> str | None:
    """Grafana Explore running the alert's own PromQL over the alert's time range."""
    expr = alert_expr(alert.generator_url)
    if not expr:
        return None
    start, end = time_range(alert, grafana)
    return _explore_url(str(grafana.url).rstrip("/"), grafana.org_id, grafana.datasource_uid, expr, start, end)


@lru_cache(maxsize=1024)  # alerts of one rule that started together share the link
def _explore_url(base: str, org_id: int, uid: str, expr: str, start: str, end: str) -> str:
    pane = {
        "datasource": uid,
        "queries": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": uid}}],
        "range": {"from": start, "to": end},
    }
    panes = json.dumps({"a1b": pane}, separators=(",", ":"))
    query = url_encode([("schemaVersion", "1"), ("orgId", str(org_id)), ("panes", panes)])
    return f"{base}/explore?{query}"


def silence_link(labels: Mapping[str, str], alertmanager_url: str | None) -> str | None:
    """Alertmanager's 'new silence' form prefilled with the alert's labels."""
    if alertmanager_url is None or not is_http_url(alertmanager_url):
        return None
    # quote() of a concatenation is the concatenation of quote()s: each `name="value"` is quoted on its
    # own and cached, because an alert's labels mostly repeat those of its neighbours (only one or two
    # values, such as instance, are new).
    matchers = "%2C".join([_quoted_matcher(name, value) for name, value in sorted(labels.items())])
    return f"{alertmanager_url.rstrip('/')}/#/silences/new?filter=%7B{matchers}%7D"


def alertmanager_url(external_url: str) -> str | None:
    """What is stored with an alert for its silence link: the payload's externalURL, if http(s)."""
    return external_url if is_http_url(external_url) else None


@lru_cache(maxsize=4096)
def _quoted_matcher(name: str, value: str) -> str:
    return url_quote(f'{name}="{_escape(value)}"')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# The order links are shown in, whichever were stored and whichever rebuilt.
LINK_ORDER = ("source", "dashboard", "explore", "silence", "runbook")


def stored_links(
    alert: WebhookAlert,
    *,
    entry: ModelEntry | None,
    grafana: GrafanaSettings,
    model_label: str,
) -> dict[str, str]:
    """The links that depend on the catalog and settings (dashboard, explore, runbook): built at ingest.

    Links built here start from URLs checked once (grafana.url at start-up) and percent-encode every
    value, so only the ones taken from the alert are checked.
    """
    links: dict[str, str | None] = {}
    if grafana.url:
        dashboard = (entry.dashboard if entry else None) or grafana.default_dashboard
        if dashboard:
            links["dashboard"] = dashboard_link(alert, dashboard, grafana, model_label)
        links["explore"] = explore_link(alert, grafana)
    runbooks = [entry.runbook_url if entry else None, alert.annotations.get("runbook_url")]
    links["runbook"] = next((url for url in runbooks if is_http_url(url)), None)  # catalog first
    return {name: url for name, url in links.items() if url}


def read_links(
    stored: Mapping[str, str] | None, *, generator_url: str, labels: Mapping[str, str], alertmanager_url: str | None
) -> dict[str, str]:
    """Every link of a stored alert: what was stored with it, plus `source` and `silence` from its columns.

    A link stored with the alert wins (rows written before migration 0005 hold all five).
    """
    rebuilt = {
        "source": generator_url if is_http_url(generator_url) else None,
        "silence": silence_link(labels, alertmanager_url),
    }
    merged = {**{k: v for k, v in rebuilt.items() if v}, **(stored or {})}
    return {name: merged[name] for name in sorted(merged, key=_link_rank)}


def _link_rank(name: str) -> tuple[int, str]:
    return (LINK_ORDER.index(name) if name in LINK_ORDER else len(LINK_ORDER), name)


def links_of(row: Mapping[str, Any]) -> dict[str, str]:
    """`read_links` for an alerts row as the store reads it."""
    return read_links(
        row.get("links"),
        generator_url=row.get("generator_url") or "",
        labels=row.get("labels") or {},
        alertmanager_url=row.get("alertmanager_url"),
    )
