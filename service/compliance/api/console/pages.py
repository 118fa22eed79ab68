"""What every console page shares: templates, headers, the signed-in user, redirects."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from compliance import __version__
from compliance.api.console import auth
from compliance.api.console.auth import ConsoleDenied, User
from compliance.api.deps import ContainerDep
from compliance.api.routes.reports import Reports, get_reports
from compliance.store.records import Status

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


class SignInFirst(Exception):
    """A page asked for without a session: answered by a redirect to the sign-in page."""


class Refused(Exception):
    """A refused request with the user it was refused to (for the error page's navigation)."""

    def __init__(self, user: User | None, denial: ConsoleDenied) -> None:
        super().__init__(denial.message)
        self.user = user
        self.denial = denial


def admin_page(user: UserDep) -> User:
    """The signed-in admin of a page: no session goes to sign-in, a producer key gets 403."""
    if user is None:
        raise SignInFirst
    try:
        auth.require_admin(user)
    except ConsoleDenied as exc:
        raise Refused(user, exc) from exc
    return user


@dataclass(frozen=True)
class AdminForm:
    """A confirmed admin action: its user and its form's fields."""

    user: User
    fields: dict[str, str]


async def admin_form(request: Request, user: UserDep) -> AdminForm:
    """An admin action's POST: a session (401), its CSRF token (403), then an admin key (403)."""
    try:
        user = signed_in(request, user)
        fields = await auth.form_fields(request)
        auth.check_csrf(request, user, fields)
        auth.require_admin(user)
    except ConsoleDenied as exc:
        raise Refused(user, exc) from exc
    return AdminForm(user, fields)


AdminPageDep = Annotated[User, Depends(admin_page)]
AdminFormDep = Annotated[AdminForm, Depends(admin_form)]


def install_handlers(app: FastAPI) -> None:
    """How the console's gates answer: a redirect to sign-in, or the error page."""

    async def sign_in_first(request: Request, _: Exception) -> Response:
        return to_sign_in(request)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return denied(request, exc.user, exc.denial)

    app.add_exception_handler(SignInFirst, sign_in_first)
    app.add_exception_handler(Refused, refused)


def page(request: Request, template: str, user: User | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """A page (or fragment) with the console's headers."""
    response = templates.TemplateResponse(request, template, {
        "base": auth.base_path(request), "user": user, "live_ms": LIVE_MS, "now": time.time(),
        "version": __version__,
        **context}, status_code=status_code, headers=PAGE_HEADERS)
    return response


def denied(request: Request, user: User | None, exc: ConsoleDenied) -> HTMLResponse:
    """The error page of a refused request."""
    return page(request, "error.html", user, status_code=exc.status, message=exc.message)


def signed_in(request: Request, user: User | None) -> User:
    """The user, or ConsoleDenied(401) (for actions: a page without a session redirects to
    sign-in with ``to_sign_in`` instead)."""
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



# Filters come from forms whose "any" choice is an empty value: parsed here, not by FastAPI.
StatusFilter = Annotated[str, Query(max_length=32)]
Cursor = Annotated[str | None, Query(max_length=512)]


def parse_status(value: str) -> Status | None:
    if not value:
        return None
    try:
        return Status(value)
    except ValueError as exc:
        raise ConsoleDenied(400, f"Unknown status {value!r}; one of: "
                                 f"{', '.join(s.value for s in Status)}.") from exc
