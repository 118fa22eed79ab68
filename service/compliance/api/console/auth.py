"""Console sign-in: an API key entered once, kept as a server-side session in Redis.

The browser holds only a random token (cookie ``Secure; HttpOnly; SameSite=Strict``, path
``{root_path}/console``); Redis holds its SHA-256 with the role, the SHA-256 of the key and a CSRF
token. Each request checks the key is still configured for that role, so removing a key from
the settings ends its sessions; a tenant key's session ends when the key is revoked or its
tenant disabled or deleted (within ``tenant_key_cache_seconds``). A tenant's session sees that
tenant's webhooks and reports only, read-only. Every POST carries the session's CSRF token (a form field or
``X-CSRF-Token``); the sign-in form carries a double-submit token of its own.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request, Response

from compliance.api.principal import DEV_PRINCIPAL, Disabled, Principal, resolve
from compliance.store.console_sessions import ConsoleSession, digest
from compliance.store.tenants import TENANT_KEY_PREFIX, key_id_of_digest
from compliance.wiring import Container

SESSION_COOKIE = "compliance_console"
SIGNIN_COOKIE = "compliance_console_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class User:
    """The signed-in browser: its role and CSRF token."""

    role: str
    csrf: str
    token: str
    tenant: str | None = None
    key_id: str = ""  # the signed-in key's public name (Principal.key_id), for the audit trail

    @property
    def admin(self) -> bool:
        """May replay, reset and clean up."""
        return self.role == "admin"

    @property
    def principal(self) -> Principal:
        """The caller as the JSON routes see it (for the same isolation rules)."""
        return Principal(role="admin" if self.admin else "producer",
                         key_id=self.key_id or "console", tenant=self.tenant)


class ConsoleDenied(Exception):
    """A console request that is refused: rendered as an HTML page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def base_path(request: Request) -> str:
    """The console's URL prefix under the configured root path (the Ingress prefix)."""
    return f"{request.scope.get('root_path', '')}/console"


def _still_valid(container: Container, session: ConsoleSession) -> bool:
    settings = container.settings
    if session.tenant is None and settings.dev_mode:
        return True
    if session.tenant is not None:
        owner = container.tenants.owner(session.key_digest)
        return owner is not None and owner.active and owner.tenant == session.tenant
    configured = settings.admin_api_keys if session.role == "admin" else settings.producer_api_keys
    found = False
    for key in configured:
        found |= hmac.compare_digest(digest(key.get_secret_value()), session.key_digest)
    return found


def current_user(request: Request, container: Container) -> User | None:
    """The signed-in user of this request, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 128:
        return None
    session = container.console_sessions.get(token)
    if session is None or not _still_valid(container, session):
        return None
    # The session keeps the key's full SHA-256; its key id is that digest's first 16 digits.
    key_id = (DEV_PRINCIPAL.key_id if container.settings.dev_mode and session.tenant is None
              else key_id_of_digest(session.key_digest))
    return User(role=session.role, csrf=session.csrf, token=token, tenant=session.tenant,
                key_id=key_id)


def sign_in(container: Container, api_key: str) -> str | None:
    """A new session's token for a known key, or None (dev mode: any key is admin)."""
    settings = container.settings
    if settings.dev_mode and not api_key.startswith(TENANT_KEY_PREFIX):
        principal: Principal | None = Principal(role="admin", key_id="dev-mode")
    else:
        try:
            principal = resolve(settings, api_key, container.tenants)
        except Disabled:
            principal = None
    if principal is None:
        return None
    token, _ = container.console_sessions.create(role=principal.role, api_key=api_key,
                                                 tenant=principal.tenant)
    return token


def set_cookie(response: Response, request: Request, name: str, value: str, *,
               max_age: int | None = None) -> None:
    """A console cookie: Secure, HttpOnly, SameSite=Strict, scoped to the console's path."""
    response.set_cookie(name, value, max_age=max_age, path=base_path(request), secure=True,
                        httponly=True, samesite="strict")


def clear_cookie(response: Response, request: Request, name: str) -> None:
    """Remove a console cookie."""
    response.delete_cookie(name, path=base_path(request), secure=True, httponly=True,
                           samesite="strict")


def new_signin_token() -> str:
    """The double-submit token of the sign-in form (cookie and field carry the same value)."""
    return secrets.token_urlsafe(24)


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (first value of each); other bodies give none; too many
    fields are a ConsoleDenied(400)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        fields = parse_qs(body, max_num_fields=50)
    except ValueError as exc:  # more fields than any console form has
        raise ConsoleDenied(400, "That form has too many fields.") from exc
    return {name: values[0] for name, values in fields.items()}


def check_csrf(request: Request, user: User, fields: dict[str, str]) -> None:
    """403 unless the request carries this session's CSRF token."""
    presented = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(presented.encode(), user.csrf.encode()):
        raise ConsoleDenied(403, "The form's CSRF token is missing or wrong: reload the page "
                                 "and try again.")


def require_admin(user: User) -> None:
    """403 for a producer key."""
    if not user.admin:
        raise ConsoleDenied(403, "This needs an admin API key; you signed in with a producer key.")
