"""Turning a notification (its kind and the alerts it covers) into a Message for one channel.

Email bodies and every plain-text part come from Jinja2 templates (`templates/`, overridable with
`templates_dir`); Slack's Block Kit structure is built here because it is data, not prose. Label and
annotation values are escaped for each medium: HTML autoescape for email, mrkdwn escaping for Slack,
CR/LF stripped from headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from receiver.notifiers.base import Message

SHIPPED_TEMPLATES = Path(__file__).resolve().parent / "templates"
if not SHIPPED_TEMPLATES.is_dir():  # running from a source checkout without installing
    SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

SLACK_MAX_ALERTS = 10  # 2 blocks each keeps a message far below Slack's 50-block limit
SLACK_SECTION_LIMIT = 3000
LINK_TITLES = {
    "dashboard": "Grafana dashboard",
    "explore": "Explore query",
    "runbook": "Runbook",
    "silence": "Silence",
    "source": "Prometheus",
}
STATUS_WORDS = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}
STATUS_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "repeat": ":repeat:"}


def mrkdwn_escape(value: str) -> str:
    """Slack's escaping: only &, < and > are special; escaped, `<!channel>` cannot ping anyone."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_safe(value: str) -> str:
    """A value fit for an email header: CR/LF (header injection) folded into spaces."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def template_env(templates_dir: Path | None = None) -> jinja2.Environment:
    """Templates from `templates_dir` first, then the shipped ones; HTML templates autoescape."""
    search = [str(templates_dir)] if templates_dir else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*search, str(SHIPPED_TEMPLATES)]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=jinja2.ChainableUndefined,  # optional catalog fields read as empty, not errors
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ts"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(d, datetime) else ""
    return env


@dataclass(frozen=True)
class RenderInput:
    """What a message is about: its kind, its group and the alerts it covers (with their events)."""

    kind: str  # firing | resolved | repeat
    group_key: str
    alerts: Sequence[dict[str, Any]]  # labels, annotations, status, starts_at, ends_at, links, model_info, event
    history_url: str | None = None


def context(data: RenderInput) -> dict[str, Any]:
    """The variables every template sees."""
    firing = [a for a in data.alerts if a.get("event", a["status"]) in ("firing", "repeat")]
    resolved = [a for a in data.alerts if a.get("event", a["status"]) == "resolved"]
    first = data.alerts[0]
    common = {k: v for k, v in first["labels"].items() if all(a["labels"].get(k) == v for a in data.alerts)}
    model = first.get("model_info") or {}
    return {
        "kind": data.kind,
        "status_word": STATUS_WORDS.get(data.kind, data.kind.upper()),
        "alertname": common.get("alertname", first["labels"].get("alertname", "alert")),
        "model_name": common.get("model") or model.get("name"),
        "model": model,
        "common_labels": common,
        "severity": common.get("severity"),
        "alerts": list(data.alerts),
        "firing": firing,
        "resolved": resolved,
        "group_key": data.group_key,
        "history_url": data.history_url,
        "link_titles": LINK_TITLES,
    }


class Renderer:
    """Renders messages for the slack, email and log channels."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.env = template_env(templates_dir)

    def _render(self, name: str, ctx: dict[str, Any]) -> str:
        return self.env.get_template(name).render(ctx)

    def subject(self, ctx: dict[str, Any]) -> str:
        return header_safe(self._render("subject.txt.j2", ctx))

    def render(
        self,
        channel: str,
        recipient: str,
        data: RenderInput,
        *,
        thread: dict[str, str] | None = None,
        original: RenderInput | None = None,
    ) -> Message:
        """The message for one recipient; `original` re-renders the firing message to update it."""
        ctx = context(data)
        subject = self.subject(ctx)
        text = self._render("message.txt.j2", ctx)
        if channel == "email":
            headers = {"X-Alert-Receiver-Group": header_safe(data.group_key)[:900]}
            html = self._render("email.html.j2", ctx)
            return Message(channel, recipient, subject, text, html=html, thread=thread, headers=headers)
        if channel == "slack":
            update_blocks = update_text = None
            if original is not None and thread is not None:
                original_ctx = context(original)
                update_blocks = slack_blocks(original_ctx, self.subject(original_ctx))
                update_text = self.subject(original_ctx)
            return Message(
                channel,
                recipient,
                subject,
                _truncate(text, 39000),
                blocks=slack_blocks(ctx, subject),
                thread=thread,
                update_blocks=update_blocks,
                update_text=update_text,
            )
        return Message(channel, recipient, subject, text, thread=thread)


def _alert_section(alert: dict[str, Any]) -> dict[str, Any]:
    ann, labels = alert["annotations"], alert["labels"]
    state = "resolved" if alert.get("event", alert["status"]) == "resolved" else "firing"
    lines = [f"{STATUS_EMOJI[state]} *{mrkdwn_escape(ann.get('summary') or labels.get('alertname', 'alert'))}*"]
    if ann.get("description"):
        lines.append(mrkdwn_escape(ann["description"]))
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    lines.append(f"`{mrkdwn_escape(shown)}`")
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines), SLACK_SECTION_LIMIT)}}


def _link_buttons(alert: dict[str, Any]) -> dict[str, Any] | None:
    links = alert.get("links") or {}
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": title}, "url": links[name]}
        for name, title in LINK_TITLES.items()
        if links.get(name) and len(links[name]) <= 3000
    ]
    return {"type": "actions", "elements": buttons} if buttons else None


def _fields(ctx: dict[str, Any]) -> list[dict[str, str]]:
    model = ctx["model"]
    values = {
        "Model": " ".join(filter(None, [ctx["model_name"], model.get("version") and f"v{model['version']}"])),
        "Owner": model.get("owner"),
        "Team": model.get("team"),
        "Severity": ctx["severity"],
        "Alerts": f"{len(ctx['firing'])} firing, {len(ctx['resolved'])} resolved",
    }
    return [{"type": "mrkdwn", "text": f"*{k}*\n{mrkdwn_escape(str(v))}"} for k, v in values.items() if v]


def slack_blocks(ctx: dict[str, Any], subject: str) -> list[dict[str, Any]]:
    """Block Kit: header, model fields, up to SLACK_MAX_ALERTS alerts with link buttons, 'and N more'."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(subject, 150)}},
        {"type": "section", "fields": _fields(ctx)},
    ]
    for alert in ctx["alerts"][:SLACK_MAX_ALERTS]:
        blocks.append(_alert_section(alert))
        buttons = _link_buttons(alert)
        if buttons:
            blocks.append(buttons)
    hidden = len(ctx["alerts"]) - SLACK_MAX_ALERTS
    if hidden > 0:
        more = f"and {hidden} more alert{'s' if hidden > 1 else ''}"
        if ctx["history_url"]:
            more += f" — <{ctx['history_url']}|see all in alert history>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return blocks
