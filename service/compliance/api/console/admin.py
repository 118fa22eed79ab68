"""The console's admin pages: dead letters (replay, bulk replay), breakers (reset) and status
cleanup. Every action goes through a confirmation page, needs an admin key and the session's
CSRF token."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from compliance.api.console.auth import ConsoleDenied
from compliance.api.console.pages import (
    AdminFormDep,
    AdminPageDep,
    StatusFilter,
    UserDep,
    denied,
    page,
    parse_status,
    redirect,
)
from compliance.api.deps import ContainerDep
from compliance.delivery.submit import ReplayOutcome
from compliance.store.dead_letters import DeadLetterFilter
from compliance.store.records import EVERYONE, Scope
from compliance.store.statuses import CleanupRule
from compliance.wiring import Container

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/cleanup", response_class=HTMLResponse)
async def cleanup_confirm(request: Request, user: AdminPageDep, status: StatusFilter = "",
                          older_than_days: Annotated[float, Query(ge=0, le=3650)] = 0) -> Response:
    """Confirm ``POST /webhook-cleanup``'s console twin."""
    try:
        selected = parse_status(status)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    which = f"{selected.value} " if selected else ""
    return page(request, "confirm.html", user, nav="webhooks", action="/cleanup",
                title="Delete status records",
                question=f"Delete every {which}status record older than "
                         f"{older_than_days:g} days? This cannot be undone.",
                fields={"status": selected.value if selected else "",
                        "older_than_days": f"{older_than_days:g}"},
                button="Delete records", back="/webhooks")


@router.post("/cleanup", response_class=HTMLResponse)
async def cleanup(request: Request, form: AdminFormDep, container: ContainerDep) -> Response:
    """Delete status records (of a status, or any) older than an age (admin, confirmed)."""
    user, fields = form.user, form.fields
    try:
        status = parse_status(fields.get("status", ""))
        try:
            days = float(fields.get("older_than_days", ""))
        except ValueError as exc:
            raise ConsoleDenied(400, "An age in days is required.") from exc
        try:  # the API's and `compliance cleanup`'s rule
            rule = CleanupRule(status=status, older_than_days=days)
        except ValueError as exc:
            raise ConsoleDenied(400, f"Cleanup refused: {exc}.") from exc
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    deleted = await asyncio.to_thread(container.statuses.apply, rule)
    await asyncio.to_thread(container.audit.record, actor=user.key_id, action="webhook.cleanup",
                            detail={"status": status.value if status else None,
                                    "older_than_days": days, "deleted": deleted})
    which = f"{status.value} " if status else ""
    log.info("console cleanup", extra={"status": which.strip() or "any", "deleted": deleted})
    return page(request, "result.html", user, nav="webhooks", title="Cleanup done",
                lines=[f"Deleted {deleted} {which}status records older than {days:g} days."],
                back="/webhooks")


# --- dead letters ----------------------------------------------------------------------------------

@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request, user: AdminPageDep, container: ContainerDep,
    error_type: Annotated[str | None, Query(max_length=64)] = None,
    destination: Annotated[str | None, Query(max_length=2048)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Dead letters filtered as ``GET /dead-letters`` (admin)."""
    selector = DeadLetterFilter(error_type=error_type or None, destination=destination or None)
    result = await asyncio.to_thread(container.dead_letters.counted_page, selector, limit=25,
                                     offset=offset)
    return page(request, "dead_letters.html", user, nav="dead-letters", result=result,
                error_type=error_type or "", destination=destination or "", offset=offset,
                limit=25)


@router.get("/dead-letters/{webhook_id}", response_class=HTMLResponse)
async def dead_letter(request: Request, user: AdminPageDep, container: ContainerDep,
                      webhook_id: str) -> Response:
    """The full entry: payload, headers sent, every attempt (admin)."""
    entry = await asyncio.to_thread(container.dead_letters.get, webhook_id)
    if entry is None:
        return page(request, "error.html", user, status_code=404, nav="dead-letters",
                    message=f"No dead letter for {webhook_id}: it was replayed or has expired.",
                    link=f"/webhooks/{webhook_id}", link_text="Its status")
    return page(request, "dead_letter.html", user, nav="dead-letters", d=entry)


@router.get("/dead-letters/{webhook_id}/replay", response_class=HTMLResponse)
async def replay_confirm(request: Request, user: AdminPageDep, webhook_id: str) -> Response:
    """Confirm a replay."""
    return page(request, "confirm.html", user, nav="dead-letters",
                action=f"/dead-letters/{webhook_id}/replay", title="Replay a dead letter",
                question=f"Send webhook {webhook_id} again, with a fresh attempt budget?",
                fields={}, button="Replay", back=f"/dead-letters/{webhook_id}")


@router.post("/dead-letters/{webhook_id}/replay", response_class=HTMLResponse)
async def replay(request: Request, form: AdminFormDep, container: ContainerDep,
                 webhook_id: str) -> Response:
    """Replay one dead letter (as ``POST /dead-letters/{id}/replay``), then show its status."""
    user = form.user
    outcome = await asyncio.to_thread(container.submitter.replay, webhook_id, actor=user.key_id)
    if outcome is ReplayOutcome.MISSING:
        return denied(request, user, ConsoleDenied(404, f"No dead letter for {webhook_id}."))
    if outcome is ReplayOutcome.BUSY:
        return denied(request, user, ConsoleDenied(409, f"{webhook_id} is being replayed already."))
    log.info("console replay", extra={"webhook_id": webhook_id})
    return redirect(request, f"/webhooks/{webhook_id}")


def _bulk_selector(fields: dict[str, str]) -> tuple[DeadLetterFilter, int]:
    error_type = fields.get("error_type", "").strip()[:64] or None
    destination = fields.get("destination", "").strip()[:2048] or None
    try:
        limit = int(fields.get("limit", "100"))
    except ValueError as exc:
        raise ConsoleDenied(400, "The limit must be a whole number.") from exc
    if not 1 <= limit <= 10_000:
        raise ConsoleDenied(400, "The limit must be between 1 and 10000.")
    return DeadLetterFilter(error_type=error_type, destination=destination), limit


@router.post("/dead-letters/replay", response_class=HTMLResponse)
async def bulk_replay(request: Request, form: AdminFormDep, container: ContainerDep) -> Response:
    """Bulk replay: without ``confirmed`` a dry run that counts, with it the replay itself."""
    user, fields = form.user, form.fields
    try:
        selector, limit = _bulk_selector(fields)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    confirmed = fields.get("confirmed") == "yes"
    counts = await asyncio.to_thread(container.submitter.replay_many, selector, limit=limit,
                                     dry_run=not confirmed, actor=user.key_id)
    kept = {"error_type": selector.error_type or "", "destination": selector.destination or "",
            "limit": str(limit)}
    if not confirmed:
        return page(request, "confirm.html", user, nav="dead-letters",
                    action="/dead-letters/replay", title="Bulk replay: dry run",
                    question=f"{counts.matched} dead letters would be replayed. Nothing was "
                             "sent yet. Replay them now?",
                    fields={**kept, "confirmed": "yes"}, button=f"Replay {counts.matched}",
                    back="/dead-letters", matched=counts.matched)
    log.info("console bulk replay", extra={"matched": counts.matched, "replayed": counts.replayed})
    shown = counts.replayed_ids[:SHOWN_REPLAYS]
    return page(request, "bulk_result.html", user, nav="dead-letters", counts=counts,
                ids=shown, statuses=await asyncio.to_thread(_statuses, container, shown),
                query=urlencode([("id", i) for i in shown]))


SHOWN_REPLAYS = 50  # a bulk replay's result lists this many of the replayed webhooks, live


def _statuses(container: Container, ids: list[str], scope: Scope = EVERYONE) -> dict[str, Any]:
    """Each id's status record (None when gone, or not ``scope``'s)."""
    records = {webhook_id: container.statuses.get(webhook_id) for webhook_id in ids}
    return {i: r if r is not None and scope.allows(r.tenant) else None for i, r in records.items()}


@router.get("/live/statuses", response_class=HTMLResponse)
async def live_statuses(request: Request, user: UserDep, container: ContainerDep,
                        id: Annotated[list[str], Query(max_length=SHOWN_REPLAYS)]) -> Response:
    """The live rows of a bulk replay's result: each webhook's current status."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    ids = [i for i in id if 0 < len(i) <= 128]
    return page(request, "_status_rows.html", user, ids=ids,
                statuses=await asyncio.to_thread(_statuses, container, ids,
                                                 user.principal.scope))


# --- breakers --------------------------------------------------------------------------------------

@router.get("/breakers", response_class=HTMLResponse)
async def breakers(
    request: Request, user: AdminPageDep, container: ContainerDep,
    state: Annotated[Literal["", "open", "half_open", "not_closed"], Query()] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Breakers with state, failures and time to the next probe (admin)."""
    store = container.breakers
    items, total = await asyncio.to_thread(store.page, offset=offset, limit=50,
                                           state=state or None)
    return page(request, "breakers.html", user, nav="breakers", items=items, total=total,
                state=state or "", offset=offset, limit=50, reset_timeout=store.reset_timeout,
                threshold=store.threshold, reset=request.query_params.get("reset"))


@router.get("/breakers/reset", response_class=HTMLResponse)
async def reset_confirm(request: Request, user: AdminPageDep,
                        name: Annotated[str, Query(min_length=1, max_length=2048)]) -> Response:
    """Confirm a breaker reset."""
    return page(request, "confirm.html", user, nav="breakers", action="/breakers/reset",
                title="Reset a circuit breaker",
                question=f"Close the breaker of {name}? Deliveries to it resume at once.",
                fields={"name": name}, button="Reset breaker", back="/breakers")


@router.post("/breakers/reset", response_class=HTMLResponse)
async def reset(request: Request, form: AdminFormDep, container: ContainerDep) -> Response:
    """Close a breaker (as ``POST /circuit-breakers/{name}/reset``)."""
    user, fields = form.user, form.fields
    name = fields.get("name", "")
    if not name or not await asyncio.to_thread(container.breakers.reset, name):
        return denied(request, user, ConsoleDenied(404, f"No circuit breaker named {name!r}."))
    await asyncio.to_thread(container.audit.record, actor=user.key_id, action="breaker.reset",
                            target=name)
    log.info("console breaker reset", extra={"destination": name})
    return redirect(request, f"/breakers?{urlencode({'reset': name})}")


