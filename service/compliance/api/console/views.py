"""The console's pages under ``/console`` anyone signed in may read: sign-in, the overview,
webhooks and reports. Live regions are refreshed by ``console.js`` from the
``/console/live/...`` fragments. The admin pages are in ``admin``."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from compliance.api.console import auth, service
from compliance.api.console.auth import ConsoleDenied, User
from compliance.api.console.pages import (
    OVERVIEW_MS,
    Cursor,
    ReportsDep,
    StatusFilter,
    UserDep,
    denied,
    page,
    parse_status,
    redirect,
    signed_in,
    to_sign_in,
)
from compliance.api.deps import ContainerDep
from compliance.api.errors import APIError
from compliance.api.routes.reports import ReportId, report_content
from compliance.reports import render
from compliance.store.records import Status
from compliance.store.statuses import decode_cursor
from compliance.wiring import Container

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)


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
    if user.tenant is not None:
        # The overview is fleet-wide (queues, every tenant's dead letters and breakers): a
        # tenant's console starts at its own webhooks.
        return redirect(request, "/webhooks")
    return page(request, "overview.html", user, nav="overview",
                **await overview_context(request, container))


@router.get("/live/overview", response_class=HTMLResponse)
async def live_overview(request: Request, user: UserDep, container: ContainerDep) -> Response:
    """The overview's live region."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    if user.tenant is not None:
        return denied(request, user, ConsoleDenied(403, "The overview is fleet-wide: it needs "
                                                        "an admin or default-tenant key."))
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
    log.info("console sign-in")
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

def _webhook_page(container: Container, user: User, status: Status | None,
                  cursor: str | None) -> Any:
    if cursor:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise ConsoleDenied(400, "That page link is malformed (cursor).") from exc
    return container.statuses.page(status=status, limit=25, cursor=cursor,
                                   scope=user.principal.scope)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks(request: Request, user: UserDep, container: ContainerDep,
                   status: StatusFilter = "", cursor: Cursor = None) -> Response:
    """Status records, newest first, filtered and cursor-paged as ``GET /webhook-statuses``."""
    if user is None:
        return to_sign_in(request)
    try:
        selected = parse_status(status)
        result = await asyncio.to_thread(_webhook_page, container, user, selected, cursor)
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
        selected = parse_status(status)
        result = await asyncio.to_thread(_webhook_page, container, user, selected, cursor)
    except ConsoleDenied as exc:
        return denied(request, user, exc)
    return page(request, "_webhook_rows.html", user, result=result, status=selected, cursor=cursor)


@router.get("/webhooks/{webhook_id}", response_class=HTMLResponse)
async def webhook(request: Request, user: UserDep, container: ContainerDep,
                  webhook_id: str) -> Response:
    """One webhook: status, correlation id and every attempt still kept."""
    if user is None:
        return to_sign_in(request)
    view = await asyncio.to_thread(service.webhook, container, webhook_id, user.principal.scope)
    if view.status is None and view.dead_letter is None:
        return denied(request, user, ConsoleDenied(404, f"No webhook {webhook_id} (unknown or expired)."))
    return page(request, "webhook.html", user, nav="webhooks", w=view, webhook_id=webhook_id)


@router.get("/live/webhooks/{webhook_id}", response_class=HTMLResponse)
async def live_webhook(request: Request, user: UserDep, container: ContainerDep,
                       webhook_id: str) -> Response:
    """A webhook's live detail."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    view = await asyncio.to_thread(service.webhook, container, webhook_id, user.principal.scope)
    return page(request, "_webhook.html", user, w=view, webhook_id=webhook_id)


# --- reports -----------------------------------------------------------------------------------------

@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, user: UserDep, reports: ReportsDep,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """Reports, newest first, with their status and downloads."""
    if user is None:
        return to_sign_in(request)
    items, total = await asyncio.to_thread(reports.records.page, offset=offset, limit=25,
                                           scope=user.principal.scope)
    return page(request, "reports.html", user, nav="reports", items=items, total=total,
                offset=offset, limit=25)


@router.get("/live/reports", response_class=HTMLResponse)
async def live_reports(request: Request, user: UserDep, reports: ReportsDep,
                       offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """The report list's live rows."""
    if user is None:
        return denied(request, None, ConsoleDenied(401, "signed out"))
    items, total = await asyncio.to_thread(reports.records.page, offset=offset, limit=25,
                                           scope=user.principal.scope)
    return page(request, "_report_rows.html", user, items=items, total=total, offset=offset,
                limit=25)


@router.get("/reports/{report_id}/download")
async def download(request: Request, user: UserDep, reports: ReportsDep,
                   report_id: ReportId, format: Annotated[render.Format, Query()] = "json") -> Response:
    """The document as an attachment (as ``GET /reports/{id}/content``)."""
    if user is None:
        return to_sign_in(request)
    try:
        body = await report_content(reports, report_id, format, user.principal)
    except APIError as exc:
        return page(request, "error.html", user, status_code=exc.status_code, nav="reports",
                    message=exc.message)
    return Response(body, media_type=render.MEDIA_TYPES[format], headers={
        "Content-Disposition": f'attachment; filename="{report_id}.{format}"',
        "Cache-Control": "no-store"})
