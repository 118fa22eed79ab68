"""Dead-letter reads and replays."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field
from starlette.convertors import Convertor, register_url_convertor

from compliance.api.deps import DeadLettersDep, ReaderDep, SubmitterDep
from compliance.api.errors import APIError, error_responses
from compliance.api.json_limits import check_body, integral
from compliance.api.routes.webhooks import TenantFilter, listing_scope
from compliance.delivery.submit import ReplayOutcome
from compliance.store.dead_letters import DeadLetterFilter, DeadLetterStore
from compliance.store.records import DeadLetter
from compliance.store.tenants import TENANT_ID_PATTERN


class _WebhookId(Convertor[str]):
    """A webhook id in a dead-letter path: one segment, never "replay" (so that
    ``GET /dead-letters/replay`` is a 405 of the bulk replay route, not a lookup)."""

    regex = "(?!replay(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("webhook_id", _WebhookId())
# Admin keys see every dead letter; a named tenant's key sees and replays its own (another
# tenant's answers 404); environment producer keys are refused, as before tenants.
router = APIRouter(responses=error_responses(401, 403, 422, 503))


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetter]
    offset: int
    limit: int
    total: int = Field(description=(
        "Dead letters matching the filters (all of them without filters), not the page size. "
        "A filtered count reads entries one by one and stops once the page is full and "
        f"{DeadLetterStore.count_scan_limit} entries were read; then total_exact is false and "
        "total is a lower bound."))
    total_exact: bool = Field(description="False when total is only a lower bound.")


@router.get("/dead-letters", response_model=DeadLetterPage)
async def list_dead_letters(
    dead_letters: DeadLettersDep,
    principal: ReaderDep,
    tenant: TenantFilter = None,
    error_type: Annotated[str | None, Query(max_length=64)] = None,
    destination: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DeadLetterPage:
    """Dead letters filtered by error type and destination prefix; total counts the matches."""
    selector = DeadLetterFilter(error_type=error_type, destination=destination,
                                scope=listing_scope(principal, tenant))
    page = await asyncio.to_thread(dead_letters.counted_page, selector,
                                   limit=limit, offset=offset)
    return DeadLetterPage(items=page.items, offset=offset, limit=limit, total=page.total,
                          total_exact=page.total_exact)


@router.get("/dead-letters/{webhook_id:webhook_id}", response_model=DeadLetter,
            responses=error_responses(404))
async def get_dead_letter(webhook_id: str, dead_letters: DeadLettersDep,
                          principal: ReaderDep) -> DeadLetter:
    """One dead letter (404 when unknown or another tenant's)."""
    entry = await asyncio.to_thread(dead_letters.get, webhook_id)
    if entry is None or not principal.sees(entry.tenant):
        raise APIError(404, "not_found", f"no dead letter for webhook {webhook_id}")
    return entry


class ReplayOne(BaseModel):
    """Result of replaying one entry."""

    webhook_id: str
    replayed: bool
    status_url: str


@router.post("/dead-letters/{webhook_id:webhook_id}/replay", response_model=ReplayOne, status_code=202,
             responses=error_responses(404, 409))
async def replay_dead_letter(webhook_id: str, submitter: SubmitterDep,
                             principal: ReaderDep) -> ReplayOne:
    """Re-enqueue one dead letter with the same webhook id and a fresh attempt budget
    (audited)."""
    outcome = await asyncio.to_thread(submitter.replay, webhook_id, actor=principal.key_id,
                                      scope=principal.scope)
    if outcome is ReplayOutcome.MISSING:
        raise APIError(404, "not_found", f"no dead letter for webhook {webhook_id}")
    if outcome is ReplayOutcome.BUSY:
        raise APIError(409, "replay_in_progress", f"webhook {webhook_id} is being replayed")
    return ReplayOne(webhook_id=webhook_id, replayed=True,
                     status_url=f"/webhook-statuses/{webhook_id}")


class BulkReplay(BaseModel):
    """Which dead letters to replay."""

    model_config = {"extra": "forbid", "strict": True}  # JSON types as declared: no "1" for 1, 0 for false

    error_type: str | None = Field(default=None, max_length=64)
    destination: str | None = Field(default=None, max_length=2048,
                                    description="Destination URL prefix.")
    older_than_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    newer_than_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    limit: Annotated[int, BeforeValidator(integral)] = Field(default=100, ge=1, le=10_000)
    dry_run: bool = False
    tenant: str | None = Field(default=None, pattern=TENANT_ID_PATTERN,
                               description="Admin keys: only this tenant's dead letters.")


class BulkReplayResult(BaseModel):
    """Counts of a bulk replay (``matched`` only, on a dry run)."""

    matched: int
    replayed: int
    skipped: int
    failed: int
    dry_run: bool


@router.post("/dead-letters/replay", response_model=BulkReplayResult, responses=error_responses(413))
async def replay_dead_letters(body: BulkReplay, submitter: SubmitterDep,
                              principal: ReaderDep) -> BulkReplayResult:
    """Replay the selected dead letters, up to ``limit`` (each replay and the bulk audited)."""
    check_body(body, max_depth=1)
    selector = DeadLetterFilter(
        error_type=body.error_type, destination=body.destination,
        older_than_seconds=body.older_than_seconds, newer_than_seconds=body.newer_than_seconds,
        scope=listing_scope(principal, body.tenant),
    )
    counts = await asyncio.to_thread(submitter.replay_many, selector,
                                     limit=body.limit, dry_run=body.dry_run,
                                     actor=principal.key_id, tenant=principal.tenant)
    return BulkReplayResult(matched=counts.matched, replayed=counts.replayed,
                            skipped=counts.skipped, failed=counts.failed, dry_run=body.dry_run)
