"""The parse-only baseline: POST /webhook validates the receiver's own payload model and answers 200.

Nothing is stored. It runs under the same uvicorn settings as `alert-receiver serve` (see
receiver/cli.py: `uvicorn.run(app, host, port, log_config=None, access_log=False,
timeout_graceful_shutdown=20)` with the receiver's logging set-up), so the ratio receiver / baseline
isolates what storing costs on top of HTTP + JSON + validation.

    python -m bench.baseline --port 8123
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from receiver.schemas import WebhookPayload

app = FastAPI(title="alert-receiver parse-only baseline")


@app.post("/webhook")
async def webhook(request: Request) -> Response:
    try:
        payload = WebhookPayload.model_validate_json(await request.body())
    except ValidationError:
        return Response(b'{"error":"invalid"}', status_code=422, media_type="application/json")
    return Response(b'{"alerts":%d}' % len(payload.alerts), media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    import uvicorn

    from receiver.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9096)
    args = parser.parse_args()
    configure_logging("WARNING", "text")
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, timeout_graceful_shutdown=20)


if __name__ == "__main__":
    main()
