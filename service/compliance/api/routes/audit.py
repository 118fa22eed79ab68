"""``GET /audit``: the audit trail still in Redis, newest first (docs/audit.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from compliance.api.deps import AuditDep, ReaderDep, SettingsDep
from compliance.api.errors import APIError, error_responses, field_error
from compliance.store.audit import DEFAULT_TENANT, AuditEntry
from compliance.store.tenants import TENANT_ID_PATTERN

router = APIRouter(responses=error_responses(401, 403, 422, 503))


class AuditItem(BaseModel):
    """One audit entry: who did what, when, for which tenant, and the chain link before it."""

    seq: int = Field(description="Position in the chain (1, 2, ...): one chain for every tenant.")
    at: float = Field(description="When, epoch seconds (millisecond precision).")
    actor: str = Field(description="The caller's key id (never the key), or a system actor "
                                   "such as system:delivery or system:cli.")
    action: str = Field(description="What: delivery.delivered, delivery.failed, "
                                    "dead_letter.replay, dead_letter.replay_bulk, "
                                    "webhook.cleanup, breaker.reset, ...")
    tenant: str | None = Field(description="The tenant whose records it touched (null: the "
                                           "default tenant).")
    target: str | None = Field(description="What it acted on: a webhook id, a breaker, ...")
    correlation_id: str | None
    detail: dict[str, Any] | None
    prev: str = Field(description="The link hash of the entry before (40 hex digits).")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditItem:
        """The API's view of a stored entry."""
        try:
            detail = json.loads(entry.detail) if entry.detail else None
        except ValueError:
            detail = {"unreadable": entry.detail[:200]}
        return cls(seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
                   tenant=entry.tenant_or_none, target=entry.target or None,
                   correlation_id=entry.cid or None,
                   detail=detail if isinstance(detail, dict) else {"value": detail},
                   prev=entry.prev)


class AuditPage(BaseModel):
    """A page of entries, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[AuditItem]
    next_cursor: str | None


@router.get("/audit", response_model=AuditPage, responses=error_responses(404))
async def list_audit(
    request: Request,
    audit: AuditDep,
    settings: SettingsDep,
    principal: ReaderDep,
    tenant: Annotated[str | None, Query(
        pattern=f"^(?:{TENANT_ID_PATTERN.strip('^$')}|{DEFAULT_TENANT})$", description=(
            f"Admin keys: only this tenant's entries ('{DEFAULT_TENANT}': the default "
            "tenant's). A tenant's key sees its own only (another tenant named: 404)."))] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
) -> AuditPage:
    """Audit entries still in Redis (older ones are archived to the report storage), newest
    first. An admin key sees every tenant's; a tenant's key its own tenant's (environment
    producer keys, like for dead letters, none)."""
    for name in ("tenant", "limit", "cursor"):  # FastAPI would take the last of several
        if len(request.query_params.getlist(name)) > 1:
            raise field_error(f"query.{name}", "given more than once")
    if principal.admin:
        every = tenant is None
        wanted = None if tenant in (None, DEFAULT_TENANT) else tenant
    else:
        own = principal.tenant or DEFAULT_TENANT
        if tenant is not None and tenant != own:
            raise APIError(404, "not_found", f"no tenant {tenant}")
        every, wanted = False, principal.tenant
    try:
        after = int(cursor) if cursor else None
    except ValueError as exc:  # the pattern lets only digits through; kept for mypy's sake
        raise field_error("query.cursor", "malformed cursor") from exc
    page = await asyncio.to_thread(audit.page, tenant=wanted, every_tenant=every,
                                   limit=min(limit, settings.max_page_size), cursor=after)
    return AuditPage(items=[AuditItem.of(e) for e in page.items], next_cursor=page.next_cursor)
