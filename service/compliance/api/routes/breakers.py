"""Circuit breaker reads and manual reset."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from compliance.api.deps import AdminAuth, BreakersDep
from compliance.api.errors import APIError

router = APIRouter()


@router.get("/circuit-breakers")
async def list_breakers(breakers: BreakersDep) -> dict[str, Any]:
    """Every destination's breaker."""
    items = await asyncio.to_thread(breakers.all)
    return {"items": [asdict(b) for b in items],
            "failure_threshold": breakers.threshold,
            "reset_timeout_seconds": breakers.reset_timeout}


@router.post("/circuit-breakers/{name:path}/reset", dependencies=[AdminAuth])
async def reset_breaker(name: str, breakers: BreakersDep) -> dict[str, Any]:
    """Close a breaker by hand (name: scheme://host:port as listed)."""
    if not await asyncio.to_thread(breakers.reset, name):
        raise APIError(404, "not_found", f"no circuit breaker named {name}")
    return {"destination": name, "state": "closed"}
