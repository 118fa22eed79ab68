"""Tenant administration (admin keys only): tenants, their producer keys, their signing secrets.

A key and a secret are shown once, in the answer that creates them; Redis keeps the key's
SHA-256 and the secret encrypted. Other API processes notice a revoked key or a disabled or
deleted tenant within ``tenant_key_cache_seconds``; this one at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, BeforeValidator, Field

from compliance.api.deps import AdminAuth, AdminDep, ContainerDep
from compliance.api.errors import APIError, error_responses
from compliance.api.json_limits import integral
from compliance.api.principal import Principal
from compliance.store.tenants import (
    KEY_ID_PATTERN,
    TENANT_ID_PATTERN,
    NotFound,
    TenancyUnavailable,
    Tenant,
    TenantStore,
)
from compliance.wiring import Container

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[AdminAuth], responses=error_responses(401, 403, 422, 503),
                   tags=["tenants"])

TenantId = Annotated[str, Path(pattern=TENANT_ID_PATTERN, description="A tenant id (ten_...).")]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="A key id (key_...).")]


class NewTenant(BaseModel):
    """A tenant to create."""

    model_config = {"extra": "forbid", "strict": True}

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                      description="Display name.")


class TenantCreated(BaseModel):
    """A new tenant and its first signing secret (shown once)."""

    tenant_id: str
    name: str
    secret_id: str
    secret: str = Field(description="The tenant's `whsec_` signing secret; not shown again.")


class TenantList(BaseModel):
    """Every tenant, oldest first, with key ids and secret ids (never keys or secrets)."""

    items: list[Tenant]


class KeyCreated(BaseModel):
    """A new producer key (shown once)."""

    key_id: str
    key: str = Field(description="Send it as X-API-Key; not shown again.")


class SecretRotation(BaseModel):
    """How long the secrets signing now keep signing beside the new one."""

    model_config = {"extra": "forbid", "strict": True}

    overlap_seconds: Annotated[int, BeforeValidator(integral)] | None = Field(
        default=None, ge=0, le=90 * 86_400,
        description="Default: COMPLIANCE_TENANT_SECRET_OVERLAP_SECONDS.")


class SecretCreated(BaseModel):
    """A new signing secret (shown once) and when the previous ones stop signing."""

    secret_id: str
    secret: str = Field(description="The new `whsec_` secret; not shown again.")
    created_at: float
    expires_at: float | None = Field(description=(
        "When the secrets that signed until now stop signing (null: there were none)."))


class Disabled(BaseModel):
    """A tenant's state after disable or enable."""

    tenant_id: str
    disabled: bool


# What each change is called in the audit trail.
_AUDITED = {"tenant created": "tenant.create", "tenant deleted": "tenant.delete",
            "tenant disabled": "tenant.disable", "tenant enabled": "tenant.enable",
            "tenant key issued": "tenant.key.issue", "tenant key revoked": "tenant.key.revoke",
            "tenant secret rotated": "tenant.secret.rotate"}


async def _done(container: Container, action: str, by: Principal, tenant_id: str,
                **fields: str) -> None:
    """One log line and one audit entry per change: what, to which tenant, by which key id
    (never a key or secret)."""
    log.info(action, extra={"tenant": tenant_id, "by_key_id": by.key_id, **fields})
    await asyncio.to_thread(container.audit.record, actor=by.key_id, action=_AUDITED[action],
                            tenant=tenant_id, target=tenant_id, detail=fields or None)


def _store(container: Container) -> TenantStore:
    return container.tenant_store


def _unavailable(exc: TenancyUnavailable) -> APIError:
    return APIError(503, "tenancy_unconfigured", str(exc))


def _missing(tenant_id: str) -> APIError:
    return APIError(404, "not_found", f"no tenant {tenant_id}")


@router.post("/tenants", status_code=201, response_model=TenantCreated)
async def create_tenant(body: NewTenant, container: ContainerDep, by: AdminDep) -> TenantCreated:
    """Create a tenant with its first signing secret (shown once)."""
    try:
        tenant, issued = await asyncio.to_thread(_store(container).create, body.name)
    except TenancyUnavailable as exc:
        raise _unavailable(exc) from exc
    await _done(container, "tenant created", by, tenant.tenant_id, secret_id=issued.secret_id)
    return TenantCreated(tenant_id=tenant.tenant_id, name=tenant.name,
                         secret_id=issued.secret_id, secret=issued.secret)


@router.get("/tenants", response_model=TenantList)
async def list_tenants(container: ContainerDep) -> TenantList:
    """Every tenant with its key ids and secret ids."""
    return TenantList(items=await asyncio.to_thread(_store(container).all))


@router.get("/tenants/{tenant_id}", response_model=Tenant, responses=error_responses(404))
async def get_tenant(tenant_id: TenantId, container: ContainerDep) -> Tenant:
    """One tenant."""
    tenant = await asyncio.to_thread(_store(container).get, tenant_id)
    if tenant is None:
        raise _missing(tenant_id)
    return tenant


@router.delete("/tenants/{tenant_id}", status_code=204, responses=error_responses(404))
async def delete_tenant(tenant_id: TenantId, container: ContainerDep, by: AdminDep) -> Response:
    """Delete a tenant and its keys (its queued webhooks are still delivered, signed)."""
    if not await asyncio.to_thread(_store(container).delete, tenant_id):
        raise _missing(tenant_id)
    container.tenants.forget()
    await _done(container, "tenant deleted", by, tenant_id)
    return Response(status_code=204)


async def _set_disabled(container: Container, tenant_id: str, disabled: bool,
                        by: Principal) -> Disabled:
    if not await asyncio.to_thread(_store(container).set_disabled, tenant_id, disabled):
        raise _missing(tenant_id)
    container.tenants.forget()
    await _done(container, "tenant disabled" if disabled else "tenant enabled", by, tenant_id)
    return Disabled(tenant_id=tenant_id, disabled=disabled)


@router.post("/tenants/{tenant_id}/disable", response_model=Disabled, responses=error_responses(404))
async def disable_tenant(tenant_id: TenantId, container: ContainerDep, by: AdminDep) -> Disabled:
    """Refuse the tenant's keys (403) until it is enabled again; nothing is deleted."""
    return await _set_disabled(container, tenant_id, True, by)


@router.post("/tenants/{tenant_id}/enable", response_model=Disabled, responses=error_responses(404))
async def enable_tenant(tenant_id: TenantId, container: ContainerDep, by: AdminDep) -> Disabled:
    """Accept the tenant's keys again."""
    return await _set_disabled(container, tenant_id, False, by)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated,
             responses=error_responses(404))
async def create_key(tenant_id: TenantId, container: ContainerDep, by: AdminDep) -> KeyCreated:
    """Issue a producer key for the tenant (shown once; Redis keeps its SHA-256)."""
    try:
        key_id, key = await asyncio.to_thread(_store(container).issue_key, tenant_id)
    except NotFound as exc:
        raise _missing(tenant_id) from exc
    await _done(container, "tenant key issued", by, tenant_id, key_id=key_id)
    return KeyCreated(key_id=key_id, key=key)


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204,
               responses=error_responses(404))
async def revoke_key(tenant_id: TenantId, key_id: KeyId, container: ContainerDep,
                     by: AdminDep) -> Response:
    """Revoke one of the tenant's keys."""
    if not await asyncio.to_thread(_store(container).revoke_key, tenant_id, key_id):
        raise APIError(404, "not_found", f"tenant {tenant_id} has no key {key_id}")
    container.tenants.forget()
    await _done(container, "tenant key revoked", by, tenant_id, key_id=key_id)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/secrets", status_code=201, response_model=SecretCreated,
             responses=error_responses(404))
async def rotate_secret(tenant_id: TenantId, container: ContainerDep, by: AdminDep,
                        body: SecretRotation | None = None) -> SecretCreated:
    """Add a signing secret (shown once); the ones signing now keep signing until their
    ``expires_at`` (now + overlap), so receivers can switch without a gap."""
    overlap = body.overlap_seconds if body and body.overlap_seconds is not None else None
    if overlap is None:
        overlap = container.settings.tenant_secret_overlap_seconds
    try:
        issued = await asyncio.to_thread(_store(container).rotate_secret, tenant_id,
                                         overlap_seconds=overlap)
    except NotFound as exc:
        raise _missing(tenant_id) from exc
    except TenancyUnavailable as exc:
        raise _unavailable(exc) from exc
    await _done(container, "tenant secret rotated", by, tenant_id, secret_id=issued.secret_id,
          previous_expire_at=repr(issued.previous_expire_at))
    return SecretCreated(secret_id=issued.secret_id, secret=issued.secret,
                         created_at=issued.created_at, expires_at=issued.previous_expire_at)
