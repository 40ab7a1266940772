"""CLI commands around delivery: `dispatch` alone, `render` a payload, `send-test` to a receiver."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from receiver.config import load_settings
from receiver.logs import configure_logging

SAMPLE_PAYLOAD = {
    "receiver": "alert-receiver",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ServiceDown",
                "job": "service-a",
                "instance": "service-a:8080",
                "severity": "critical",
            },
            "annotations": {
                "summary": "service-a is down (test alert from alert-receiver send-test)",
                "description": "Prometheus could not scrape service-a for 5 minutes.",
            },
            "startsAt": "",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up%7Bjob%3D%22service-a%22%7D+%3D%3D+0",
        }
    ],
    "groupLabels": {"alertname": "ServiceDown"},
    "commonLabels": {"alertname": "ServiceDown", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.monitoring:9093",
    "version": "4",
    "groupKey": '{}:{alertname="ServiceDown"}',
    "truncatedAlerts": 0,
}


def cmd_dispatch(args: argparse.Namespace) -> int:
    """Run only the dispatcher (for a deployment that separates it from the webhook)."""
    from receiver.dispatch import Dispatcher
    from receiver.store import migrate
    from receiver.store.engine import create_engine

    settings = load_settings(args.config)
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        engine = create_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        await migrate.upgrade(engine)
        dispatcher = Dispatcher.from_settings(engine, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        dispatcher.start()
        await stop.wait()
        await dispatcher.stop(grace=args.grace)
        await engine.dispose()

    asyncio.run(run())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Print what each recipient would get for a payload, without storing or sending anything."""
    from receiver.api.webhook import parse_payload
    from receiver.catalog import ModelCatalog
    from receiver.ingest import Preparer
    from receiver.render import Renderer, RenderInput

    settings = load_settings(args.config)
    payload = parse_payload(Path(args.payload).read_bytes())
    catalog = ModelCatalog(
        settings.models,
        models_file=settings.models_file,
        model_label=settings.model_label,
        version_label=settings.model_version_label,
    )
    incoming = Preparer.from_settings(settings, catalog).prepare(payload)
    per_target: dict[tuple[str, str], list[dict]] = {}
    for item in incoming.alerts:
        row = {
            **item.documents(),
            "status": item.status,
            "event": item.status,
            "starts_at": item.starts_at,
            "ends_at": item.ends_at,
        }
        for target in item.recipients:
            per_target.setdefault(target, []).append(row)
    renderer = Renderer(settings.templates_dir)
    for (channel, recipient), alerts in per_target.items():
        kind = "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing"
        message = renderer.render(channel, recipient, RenderInput(kind, payload.group_key, alerts))
        print(f"=== {channel} → {recipient}\nSubject: {message.subject}\n\n{message.text}")
        if args.blocks and message.blocks:
            print(json.dumps(message.blocks, indent=2, ensure_ascii=False))
    return 0


def cmd_send_test(args: argparse.Namespace) -> int:
    """POST a sample (or given) payload to a running receiver and print its answer."""
    from datetime import UTC, datetime

    import httpx

    if args.payload:
        body = json.loads(Path(args.payload).read_text(encoding="utf-8"))
    else:
        body = json.loads(json.dumps(SAMPLE_PAYLOAD))
        body["alerts"][0]["startsAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        response = httpx.post(args.url, json=body, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        print(f"send-test: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dispatch = sub.add_parser("dispatch", help="run only the dispatcher (sends pending notifications)")
    dispatch.add_argument("--config", type=Path)
    dispatch.add_argument("--grace", type=float, default=20.0, help="seconds to finish in-flight sends on SIGTERM")
    dispatch.set_defaults(func=cmd_dispatch)

    render = sub.add_parser("render", help="print what each recipient would get for a payload (sends nothing)")
    render.add_argument("--payload", required=True, help="an Alertmanager webhook payload (JSON file)")
    render.add_argument("--config", type=Path)
    render.add_argument("--blocks", action="store_true", help="also print the Slack Block Kit JSON")
    render.set_defaults(func=cmd_render)

    send = sub.add_parser("send-test", help="post a sample alert to a running receiver")
    send.add_argument("--url", default="http://127.0.0.1:9095/webhook")
    send.add_argument("--token", help="the receiver's webhook token, if it has one")
    send.add_argument("--payload", help="post this JSON file instead of the built-in sample")
    send.set_defaults(func=cmd_send_test)
