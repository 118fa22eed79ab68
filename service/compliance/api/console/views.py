"""The console's pages under ``/console``: server-rendered HTML, live regions refreshed by
``console.js`` from the ``/console/live/...`` fragments, and confirmation pages in front of
every destructive action (replay, bulk replay, breaker reset, cleanup)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from compliance.api.console import auth, service
from compliance.api.console.auth import ConsoleDenied, User
from compliance.api.deps import ContainerDep
from compliance.api.errors import APIError
from compliance.api.routes.reports import ReportId, Reports, get_reports, report_content
from compliance.delivery.submit import ReplayOutcome
from compliance.reports import render
from compliance.store.dead_letters import DeadLetterFilter
from compliance.store.records import Status
from compliance.store.statuses import decode_cursor
from compliance.wiring import Container

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
# Everything from this origin only: no inline script or style, no framing, forms post home.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}
LIVE_MS = 2000  # how often live regions refresh
OVERVIEW_MS = 5000  # the overview reads more (health checks, a DLQ sample): less often

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


templates.env.filters["when"] = _when
templates.env.filters["bytes"] = _bytes


def console_user(request: Request, container: ContainerDep) -> User | None:
    """The signed-in user, or None (a sync dependency: FastAPI runs it off the event loop)."""
    return auth.current_user(request, container)


UserDep = Annotated[User | None, Depends(console_user)]
ReportsDep = Annotated[Reports, Depends(get_reports)]


def page(request: Request, template: str, user: User | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """A page (or fragment) with the console's headers."""
    response = templates.TemplateResponse(request, template, {
        "base": auth.base_path(request), "user": user, "live_ms": LIVE_MS, "now": time.time(),
        **context}, status_code=status_code, headers=PAGE_HEADERS)
    return response


def denied(request: Request, user: User | None, exc: ConsoleDenied) -> HTMLResponse:
    """The error page of a refused request."""
    return page(request, "error.html", user, status_code=exc.status, message=exc.message)


def signed_in(request: Request, user: User | None) -> User:
    """The user, or ConsoleDenied(401) (pages redirect to sign-in instead, see ``gate``)."""
    if user is None:
        raise ConsoleDenied(401, "Your session has ended: sign in again.")
    return user


def to_sign_in(request: Request) -> RedirectResponse:
    """Back to the sign-in page."""
    return RedirectResponse(auth.base_path(request), status_code=303, headers=PAGE_HEADERS)


def redirect(request: Request, path: str) -> RedirectResponse:
    """303 to a console path (after a POST)."""
    return RedirectResponse(f"{auth.base_path(request)}{path}", status_code=303,
                            headers=PAGE_HEADERS)


async def health(request: Request) -> tuple[str, dict[str, str], int | None]:
    """(overall, each component's state, workers answering) from the (cached) health checks."""
    overall, components = await request.app.state.health.check()
    states = {name: str(c.get("status", "unknown")) for name, c in components.items()}
    return overall, states, service.workers_from_health(components)


async def overview_context(request: Request, container: Container) -> dict[str, Any]:
    """What the overview and its live region show."""
    overall, states, workers = await health(request)
    overview = await asyncio.to_thread(service.overview, container, workers=workers)
    return {"o": overview, "health": overall, "components": states,
            "dlq_sample": service.DLQ_TYPE_SAMPLE, "live_ms": OVERVIEW_MS}


# --- sign-in and overview ----------------------------------------------------------------------

@router.get("", response_class=HTMLResponse)
async def home(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """The overview, or the sign-in page."""
    if user is None:
        token = auth.new_signin_token()
        response = page(request, "signin.html", None, signin_token=token)
        auth.set_cookie(response, request, auth.SIGNIN_COOKIE, token, max_age=3600)
        return response
    return page(request, "overview.html", user, nav="overview",
                **await overview_context(request, container))


@router.get("/live/overview", response_class=HTMLResponse)
async def live_overview(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """The overview's live region."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    return page(request, "_overview.html", user, **await overview_context(request, container))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, container: ContainerDep) -> Response:
    """Check the key once and start a session; the key itself is not kept anywhere."""
    try:
        fields = await auth.form_fields(request)
    except ConsoleDenied as exc:
        return denied(request, None, exc)
    expected = request.cookies.get(auth.SIGNIN_COOKIE, "")
    presented = fields.get(auth.CSRF_FIELD, "")
    if not expected or not presented or not hmac.compare_digest(presented, expected):
        return denied(request, None, ConsoleDenied(
            403, "The sign-in form expired or its CSRF token is wrong: reload the page."))
    api_key = fields.get("api_key", "").strip()
    token = await asyncio.to_thread(auth.sign_in, container, api_key) if api_key else None
    if token is None:
        log.warning("console sign-in refused: unknown API key")
        fresh = auth.new_signin_token()
        response = page(request, "signin.html", None, status_code=401, signin_token=fresh,
                        error="That API key is not valid here.")
        auth.set_cookie(response, request, auth.SIGNIN_COOKIE, fresh, max_age=3600)
        return response
    done = redirect(request, "")
    auth.set_cookie(done, request, auth.SESSION_COOKIE, token)
    auth.clear_cookie(done, request, auth.SIGNIN_COOKIE)
    return done


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """End the session."""
    try:
        user = signed_in(request, user)
        auth.check_csrf(request, user, await auth.form_fields(request))
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    await asyncio.to_thread(container.console_sessions.delete, user.token)
    response = redirect(request, "")
    auth.clear_cookie(response, request, auth.SESSION_COOKIE)
    return response


# --- webhooks ------------------------------------------------------------------------------------

# Filters come from forms whose "any" choice is an empty value: parsed here, not by FastAPI.
StatusFilter = Annotated[str, Query(max_length=32)]
Cursor = Annotated[str | None, Query(max_length=512)]


def _status(value: str) -> Status | None:
    if not value:
        return None
    try:
        return Status(value)
    except ValueError as exc:
        raise ConsoleDenied(400, f"Unknown status {value!r}; one of: "
                                 f"{', '.join(s.value for s in Status)}.") from exc


def _webhook_page(container: Container, status: Status | None, cursor: str | None) -> Any:
    if cursor:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise ConsoleDenied(400, "That page link is malformed (cursor).") from exc
    return container.statuses.page(status=status, limit=25, cursor=cursor)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks(request: Request, user: UserDep, container: ContainerDep,
                   status: StatusFilter = "", cursor: Cursor = None) -> Response:
    """Status records, newest first, filtered and cursor-paged as ``GET /webhook-statuses``."""
    if user is None:
        return to_sign_in(request)
    try:
        selected = _status(status)
        result = await asyncio.to_thread(_webhook_page, container, selected, cursor)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    return page(request, "webhooks.html", user, nav="webhooks", result=result, status=selected,
                cursor=cursor, statuses=list(Status))


@router.get("/live/webhooks", response_class=HTMLResponse)
async def live_webhooks(request: Request, user: UserDep, container: ContainerDep,
                        status: StatusFilter = "", cursor: Cursor = None) -> Response:
    """The webhook list's live rows."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    try:
        selected = _status(status)
        result = await asyncio.to_thread(_webhook_page, container, selected, cursor)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    return page(request, "_webhook_rows.html", user, result=result, status=selected, cursor=cursor)


@router.get("/webhooks/{webhook_id}", response_class=HTMLResponse)
async def webhook(request: Request, user: UserDep, container: ContainerDep,
                  webhook_id: str) -> Response:
    """One webhook: status, correlation id and every attempt still kept."""
    if user is None:
        return to_sign_in(request)
    view = await asyncio.to_thread(service.webhook, container, webhook_id)
    if view.status is None and view.dead_letter is None:
        return denied(request, user, ConsoleDenied(404, f"No webhook {webhook_id} (unknown or expired)."))
    return page(request, "webhook.html", user, nav="webhooks", w=view, webhook_id=webhook_id)


@router.get("/live/webhooks/{webhook_id}", response_class=HTMLResponse)
async def live_webhook(request: Request, user: UserDep, container: ContainerDep,
                       webhook_id: str) -> Response:
    """A webhook's live detail."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    view = await asyncio.to_thread(service.webhook, container, webhook_id)
    return page(request, "_webhook.html", user, w=view, webhook_id=webhook_id)


@router.get("/cleanup", response_class=HTMLResponse)
async def cleanup_confirm(request: Request, user: UserDep, status: StatusFilter = "",
                          older_than_days: Annotated[float, Query(ge=0, le=3650)] = 0) -> Response:
    """Confirm ``POST /webhook-cleanup``'s console twin."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
        selected = _status(status)
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
async def cleanup(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """Delete status records (of a status, or any) older than an age (admin, confirmed)."""
    try:
        user = signed_in(request, user)
        fields = await auth.form_fields(request)
        auth.check_csrf(request, user, fields)
        auth.require_admin(user)
        status = _status(fields.get("status", ""))
        try:
            days = float(fields.get("older_than_days", ""))
        except ValueError as exc:
            raise ConsoleDenied(400, "An age in days is required.") from exc
        if not math.isfinite(days) or not 0 <= days <= 3650:
            raise ConsoleDenied(400, "The age must be between 0 and 3650 days.")
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    deleted = await asyncio.to_thread(container.statuses.cleanup, status=status,
                                      older_than_seconds=days * 86400)
    which = f"{status.value} " if status else ""
    log.info("console cleanup", extra={"status": which.strip() or "any", "deleted": deleted})
    return page(request, "result.html", user, nav="webhooks", title="Cleanup done",
                lines=[f"Deleted {deleted} {which}status records older than {days:g} days."],
                back="/webhooks")


# --- dead letters ----------------------------------------------------------------------------------

@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request, user: UserDep, container: ContainerDep,
    error_type: Annotated[str | None, Query(max_length=64)] = None,
    destination: Annotated[str | None, Query(max_length=2048)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Dead letters filtered as ``GET /dead-letters`` (admin)."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    selector = DeadLetterFilter(error_type=error_type or None, destination=destination or None)
    result = await asyncio.to_thread(container.dead_letters.counted_page, selector, limit=25,
                                     offset=offset)
    return page(request, "dead_letters.html", user, nav="dead-letters", result=result,
                error_type=error_type or "", destination=destination or "", offset=offset,
                limit=25)


@router.get("/dead-letters/{webhook_id}", response_class=HTMLResponse)
async def dead_letter(request: Request, user: UserDep, container: ContainerDep,
                      webhook_id: str) -> Response:
    """The full entry: payload, headers sent, every attempt (admin)."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    entry = await asyncio.to_thread(container.dead_letters.get, webhook_id)
    if entry is None:
        return page(request, "error.html", user, status_code=404, nav="dead-letters",
                    message=f"No dead letter for {webhook_id}: it was replayed or has expired.",
                    link=f"/webhooks/{webhook_id}", link_text="Its status")
    return page(request, "dead_letter.html", user, nav="dead-letters", d=entry)


@router.get("/dead-letters/{webhook_id}/replay", response_class=HTMLResponse)
async def replay_confirm(request: Request, user: UserDep, webhook_id: str) -> Response:
    """Confirm a replay."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    return page(request, "confirm.html", user, nav="dead-letters",
                action=f"/dead-letters/{webhook_id}/replay", title="Replay a dead letter",
                question=f"Send webhook {webhook_id} again, with a fresh attempt budget?",
                fields={}, button="Replay", back=f"/dead-letters/{webhook_id}")


@router.post("/dead-letters/{webhook_id}/replay", response_class=HTMLResponse)
async def replay(request: Request, user: UserDep, container: ContainerDep,
                 webhook_id: str) -> Response:
    """Replay one dead letter (as ``POST /dead-letters/{id}/replay``), then show its status."""
    try:
        user = signed_in(request, user)
        auth.check_csrf(request, user, await auth.form_fields(request))
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    outcome = await asyncio.to_thread(container.submitter.replay, webhook_id)
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
async def bulk_replay(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """Bulk replay: without ``confirmed`` a dry run that counts, with it the replay itself."""
    try:
        user = signed_in(request, user)
        fields = await auth.form_fields(request)
        auth.check_csrf(request, user, fields)
        auth.require_admin(user)
        selector, limit = _bulk_selector(fields)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    confirmed = fields.get("confirmed") == "yes"
    counts = await asyncio.to_thread(container.submitter.replay_many, selector, limit=limit,
                                     dry_run=not confirmed)
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


def _statuses(container: Container, ids: list[str]) -> dict[str, Any]:
    return {webhook_id: container.statuses.get(webhook_id) for webhook_id in ids}


@router.get("/live/statuses", response_class=HTMLResponse)
async def live_statuses(request: Request, user: UserDep, container: ContainerDep,
                        id: Annotated[list[str], Query(max_length=SHOWN_REPLAYS)]) -> Response:
    """The live rows of a bulk replay's result: each webhook's current status."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    ids = [i for i in id if 0 < len(i) <= 128]
    return page(request, "_status_rows.html", user, ids=ids,
                statuses=await asyncio.to_thread(_statuses, container, ids))


# --- breakers --------------------------------------------------------------------------------------

@router.get("/breakers", response_class=HTMLResponse)
async def breakers(
    request: Request, user: UserDep, container: ContainerDep,
    state: Annotated[Literal["", "open", "half_open", "not_closed"], Query()] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Breakers with state, failures and time to the next probe (admin)."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    store = container.breakers
    items, total = await asyncio.to_thread(store.page, offset=offset, limit=50,
                                           state=state or None)
    return page(request, "breakers.html", user, nav="breakers", items=items, total=total,
                state=state or "", offset=offset, limit=50, reset_timeout=store.reset_timeout,
                threshold=store.threshold, reset=request.query_params.get("reset"))


@router.get("/breakers/reset", response_class=HTMLResponse)
async def reset_confirm(request: Request, user: UserDep,
                        name: Annotated[str, Query(min_length=1, max_length=2048)]) -> Response:
    """Confirm a breaker reset."""
    if user is None:
        return to_sign_in(request)
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    return page(request, "confirm.html", user, nav="breakers", action="/breakers/reset",
                title="Reset a circuit breaker",
                question=f"Close the breaker of {name}? Deliveries to it resume at once.",
                fields={"name": name}, button="Reset breaker", back="/breakers")


@router.post("/breakers/reset", response_class=HTMLResponse)
async def reset(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """Close a breaker (as ``POST /circuit-breakers/{name}/reset``)."""
    try:
        user = signed_in(request, user)
        fields = await auth.form_fields(request)
        auth.check_csrf(request, user, fields)
        auth.require_admin(user)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    name = fields.get("name", "")
    if not name or not await asyncio.to_thread(container.breakers.reset, name):
        return denied(request, user, ConsoleDenied(404, f"No circuit breaker named {name!r}."))
    log.info("console breaker reset", extra={"destination": name})
    return redirect(request, f"/breakers?{urlencode({'reset': name})}")


# --- reports -----------------------------------------------------------------------------------------

@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, user: UserDep, reports: ReportsDep,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """Reports, newest first, with their status and downloads."""
    if user is None:
        return to_sign_in(request)
    items, total = await asyncio.to_thread(reports.records.page, offset=offset, limit=25)
    return page(request, "reports.html", user, nav="reports", items=items, total=total,
                offset=offset, limit=25)


@router.get("/live/reports", response_class=HTMLResponse)
async def live_reports(request: Request, user: UserDep, reports: ReportsDep,
                       offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """The report list's live rows."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    items, total = await asyncio.to_thread(reports.records.page, offset=offset, limit=25)
    return page(request, "_report_rows.html", user, items=items, total=total, offset=offset,
                limit=25)


@router.get("/reports/{report_id}/download")
async def download(request: Request, user: UserDep, reports: ReportsDep,
                   report_id: ReportId, format: Annotated[render.Format, Query()] = "json") -> Response:
    """The document as an attachment (as ``GET /reports/{id}/content``)."""
    if user is None:
        return to_sign_in(request)
    try:
        body = await report_content(reports, report_id, format)
    except APIError as exc:
        return page(request, "error.html", user, status_code=exc.status_code, nav="reports",
                    message=exc.message)
    return Response(body, media_type=render.MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="{report_id}.{format}"',
        "Cache-Control": "no-store"})
