"""Circuit breaker reads and manual reset.

Breakers are per destination, shared by every tenant that sends there. An admin sees them all
and resets them; a named tenant's key sees those of the destinations it has sent to (and resets
none: the receiver is not its alone)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from compliance.api.deps import AdminDep, AuditDep, BreakersDep, ReaderDep
from compliance.api.errors import APIError, error_responses
from compliance.api.routes.webhooks import TenantFilter

router = APIRouter(responses=error_responses(401, 403, 422, 503))


class Breaker(BaseModel):
    """One destination's breaker (an open one past its reset timeout reads half_open)."""

    destination: str
    state: Literal["closed", "open", "half_open"]
    failures: int
    opened_at: float | None
    times_opened: int
    updated_at: float | None


class BreakerPage(BaseModel):
    """A page of breakers and the fleet's counts by state."""

    items: list[Breaker]
    offset: int
    limit: int
    total: int = Field(description="Breakers matching ?state= (all of them without it).")
    counts: dict[str, int] = Field(description="Every breaker the caller sees, by state.")
    failure_threshold: int
    reset_timeout_seconds: float


@router.get("/circuit-breakers", response_model=BreakerPage)
async def list_breakers(
    breakers: BreakersDep,
    principal: ReaderDep,
    tenant: TenantFilter = None,
    state: Annotated[Literal["open", "half_open", "not_closed"] | None, Query(
        description="open, half_open or not_closed (both): newest opened first. Without it, "
                    "every breaker, most recently used first.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> BreakerPage:
    """Breakers, a page at a time (a breaker idle for breaker_idle_ttl is forgotten)."""

    own = tenant if principal.admin else principal.tenant

    def read() -> tuple[list[Any], int, dict[str, int]]:
        if own is not None:
            return breakers.tenant_page(own, offset=offset, limit=limit, state=state)
        items, total = breakers.page(offset=offset, limit=limit, state=state)
        return items, total, breakers.counts()

    items, total, counts = await asyncio.to_thread(read)
    return BreakerPage(items=[Breaker(**asdict(b)) for b in items], offset=offset, limit=limit,
                       total=total, counts=counts, failure_threshold=breakers.threshold,
                       reset_timeout_seconds=breakers.reset_timeout)


@router.post("/circuit-breakers/{name:path}/reset", responses=error_responses(404))
async def reset_breaker(name: str, breakers: BreakersDep, audit: AuditDep,
                        principal: AdminDep) -> dict[str, Any]:
    """Close a breaker by hand (name: scheme://host:port as listed); audited."""
    if not await asyncio.to_thread(breakers.reset, name):
        raise APIError(404, "not_found", f"no circuit breaker named {name}")
    await asyncio.to_thread(audit.record, actor=principal.key_id, action="breaker.reset",
                            tenant=principal.tenant, target=name)
    return {"destination": name, "state": "closed"}
