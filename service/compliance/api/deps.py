"""Injectables as ``Annotated`` aliases, so route signatures read like plain types.

They are ``async def`` although none of them awaits: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread hop per dependency per request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from compliance.api.errors import APIError
from compliance.api.principal import DEV_PRINCIPAL, Disabled, Principal, resolve_async
from compliance.delivery.submit import Submitter
from compliance.settings import Settings
from compliance.store.audit import AuditStore
from compliance.store.breakers import BreakerStore
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.statuses import StatusStore
from compliance.store.tenants import TENANT_KEY_PREFIX
from compliance.wiring import Container


async def get_container(request: Request) -> Container:
    """The process's composition root (built by the app factory)."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_settings(container: ContainerDep) -> Settings:
    """The settings the app was built with."""
    return container.settings


async def get_statuses(container: ContainerDep) -> StatusStore:
    """Status records."""
    return container.statuses


async def get_dead_letters(container: ContainerDep) -> DeadLetterStore:
    """Dead letters."""
    return container.dead_letters


async def get_breakers(container: ContainerDep) -> BreakerStore:
    """Circuit breakers."""
    return container.breakers


async def get_submitter(container: ContainerDep) -> Submitter:
    """Accepts webhooks and replays dead letters."""
    return container.submitter


async def get_audit(container: ContainerDep) -> AuditStore:
    """The audit trail."""
    return container.audit


SettingsDep = Annotated[Settings, Depends(get_settings)]
AuditDep = Annotated[AuditStore, Depends(get_audit)]
StatusesDep = Annotated[StatusStore, Depends(get_statuses)]
DeadLettersDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
BreakersDep = Annotated[BreakerStore, Depends(get_breakers)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]


# The two ways to present a key, declared as the spec's security schemes (either will do).
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False,
                              description="A producer or admin API key.")
BEARER = HTTPBearer(scheme_name="BearerKey", auto_error=False,
                    description="The same key as `Authorization: Bearer <key>`.")
ApiKeyHeaderDep = Annotated[str | None, Security(API_KEY_HEADER)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def _presented_key(x_api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    if x_api_key:
        return x_api_key
    if bearer is not None:
        return bearer.credentials.strip() or None
    return None


async def _require(request: Request, presented: str | None, *, admin: bool) -> Principal:
    container: Container = request.app.state.container
    settings = container.settings
    if settings.dev_mode and not (presented or "").startswith(TENANT_KEY_PREFIX):
        return DEV_PRINCIPAL  # dev mode: no key needed, except to act as a tenant
    if not presented:
        raise APIError(401, "unauthorized", "an API key is required (X-API-Key header)",
                       headers={"WWW-Authenticate": "Bearer"})
    try:
        principal = await resolve_async(settings, presented, container.tenants,
                                        request.app.state.aredis)
    except Disabled as exc:
        raise APIError(403, "forbidden", "this API key's tenant is disabled") from exc
    if principal is None:
        raise APIError(403, "forbidden", "unknown API key")
    if admin and not principal.admin:
        raise APIError(403, "forbidden", "this API key may not call admin endpoints")
    return principal


async def require_producer(request: Request, x_api_key: ApiKeyHeaderDep = None,
                           bearer: BearerDep = None) -> Principal:
    """Producer (of any tenant) or admin key: the caller."""
    return await _require(request, _presented_key(x_api_key, bearer), admin=False)


async def require_admin(request: Request, x_api_key: ApiKeyHeaderDep = None,
                        bearer: BearerDep = None) -> Principal:
    """Admin key only: the caller."""
    return await _require(request, _presented_key(x_api_key, bearer), admin=True)


async def require_reader(request: Request, x_api_key: ApiKeyHeaderDep = None,
                         bearer: BearerDep = None) -> Principal:
    """Admin, or a named tenant's key (its own records): dead letters and breakers, which
    environment producer keys never read (an install without tenants changes nothing)."""
    principal = await _require(request, _presented_key(x_api_key, bearer), admin=False)
    if not principal.admin and principal.tenant is None:
        raise APIError(403, "forbidden", "this API key may not call admin endpoints")
    return principal


ProducerAuth = Depends(require_producer)
AdminAuth = Depends(require_admin)
ReaderAuth = Depends(require_reader)
ProducerDep = Annotated[Principal, ProducerAuth]
AdminDep = Annotated[Principal, AdminAuth]
ReaderDep = Annotated[Principal, ReaderAuth]
