"""Health, liveness and metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from compliance import __version__
from compliance.api import fleet
from compliance.api.deps import ContainerDep
from compliance.api.errors import error_responses
from compliance.observability import metrics

log = logging.getLogger(__name__)
router = APIRouter(responses=error_responses())


class Health(BaseModel):
    """Overall status and each component's state (with counts and latency, never names)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    version: str | None = Field(default=None, description="Absent from /health/ready.")
    components: dict[str, dict[str, Any]] = Field(
        description="By component: status (up, degraded, down, unknown) and numbers.")


def _health_responses(what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": Health}, 503: {"model": Health, "description": what}}


@router.get("/health", response_model=Health,
            responses=_health_responses("Redis, storage or the facade is down."))
async def health(request: Request) -> JSONResponse:
    """Component status; 503 when a critical component (Redis, storage, facade) is down."""
    status, components = await request.app.state.health.check()
    body: dict[str, Any] = {"status": status, "version": __version__,
                            "components": {name: public_view(name, c) for name, c in components.items()}}
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


def public_view(name: str, component: dict[str, Any]) -> dict[str, Any]:
    """What an unauthenticated caller sees of a component: its state and numbers (counts,
    latency), never names, paths or error text (hosts, directories, worker names). The
    details of a component that is not up go to the log."""
    if component.get("status") != "up":
        log.warning("health: component not up", extra={"component": name, "detail": component})
    view: dict[str, Any] = {"status": component.get("status", "unknown")}
    for key, value in component.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            view[key] = value
        elif isinstance(value, list) and key == "workers":
            view[key] = len(value)  # how many answered, not their host names
        elif isinstance(value, dict) and value and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
            view[key] = value  # counts by queue
    return view


@router.get("/health/ready", response_model=Health,
            responses=_health_responses("This API cannot accept work (Redis is down)."))
async def ready(request: Request) -> JSONResponse:
    """Can this API accept work? Only what accepting needs (Redis); 503 otherwise (readiness)."""
    status, components = await request.app.state.health.check(ready_only=True)
    body: dict[str, Any] = {"status": status,
                            "components": {name: public_view(name, c) for name, c in components.items()}}
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers; nothing else is checked (liveness)."""
    return {"status": "alive"}


@router.get("/metrics", response_class=Response, responses={200: {
    "description": "Prometheus text exposition format.",
    "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def prometheus_metrics(request: Request, container: ContainerDep) -> Response:
    """Prometheus text: HTTP metrics, worker counters (multiprocess), Redis-derived gauges."""
    collector = metrics.RedisStateCollector(lambda: fleet.redis_state(container))
    body = await asyncio.to_thread(metrics.render, request.app.state.registry, collector)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
