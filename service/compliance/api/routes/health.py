"""Health, liveness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from compliance import __version__
from compliance.api import fleet
from compliance.api.deps import ContainerDep
from compliance.observability import metrics

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Component status; 503 when a critical component (Redis, storage, facade) is down."""
    status, components = await request.app.state.health.check()
    body: dict[str, Any] = {"status": status, "version": __version__, "components": components}
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """Can this API accept work? Only what accepting needs (Redis); 503 otherwise (readiness)."""
    status, components = await request.app.state.health.check(ready_only=True)
    body: dict[str, Any] = {"status": status, "components": components}
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers; nothing else is checked (liveness)."""
    return {"status": "alive"}


@router.get("/metrics")
async def prometheus_metrics(request: Request, container: ContainerDep) -> Response:
    """Prometheus text: HTTP metrics, worker counters (multiprocess), Redis-derived gauges."""
    collector = metrics.RedisStateCollector(lambda: fleet.redis_state(container))
    body = await asyncio.to_thread(metrics.render, request.app.state.registry, collector)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
