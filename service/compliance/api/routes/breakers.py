"""Circuit breaker reads and manual reset."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from compliance.api.deps import AdminAuth, ServicesDep
from compliance.api.errors import APIError

router = APIRouter()


@router.get("/circuit-breakers")
async def list_breakers(services: ServicesDep) -> dict[str, Any]:
    """Every destination's breaker."""
    breakers = await asyncio.to_thread(services.breakers.all)
    return {"items": [asdict(b) for b in breakers],
            "failure_threshold": services.breakers.threshold,
            "reset_timeout_seconds": services.breakers.reset_timeout}


@router.post("/circuit-breakers/{name:path}/reset", dependencies=[AdminAuth])
async def reset_breaker(name: str, services: ServicesDep) -> dict[str, Any]:
    """Close a breaker by hand (name: scheme://host:port as listed)."""
    if not await asyncio.to_thread(services.breakers.reset, name):
        raise APIError(404, "not_found", f"no circuit breaker named {name}")
    return {"destination": name, "state": "closed"}
