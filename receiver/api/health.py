"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from receiver.api.errors import error_body
from receiver.store import history

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and the writer takes webhooks")
async def readyz(request: Request) -> Response:
    if not request.app.state.receiver.writer.running:  # e.g. its process is being restarted
        return JSONResponse(error_body("storage_unavailable", "the writer is not running"), 503)
    try:
        async with request.app.state.receiver.engine.connect() as conn:
            await history.ping(conn)
    except Exception:  # any failure means "not ready"; the cause is in the log, not in the answer
        request.app.state.receiver.log.warning("readiness check failed", exc_info=True)
        return JSONResponse(error_body("storage_unavailable", "the database is not reachable"), 503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    body, content_type = await request.app.state.receiver.metrics.render(request.app.state.receiver)
    return Response(body, media_type=content_type)
