"""Who is calling: the role of the presented key, a stable id for it, and its tenant.

The key id names a key in logs and in the audit trail without revealing it: a short SHA-256
digest, the same in every process. A key configured through the environment belongs to no
tenant (``tenant`` is None: the default tenant).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Literal

from compliance.settings import Settings
from compliance.store.records import EVERYONE, Scope
from compliance.store.tenants import TENANT_KEY_PREFIX, KeyOwner, TenantDirectory, key_digest

Role = Literal["admin", "producer"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    role: Role
    key_id: str
    tenant: str | None = None

    @property
    def admin(self) -> bool:
        """An admin key: sees and acts on everything."""
        return self.role == "admin"

    @property
    def scope(self) -> Scope:
        """Whose records this caller sees: everyone's (admin), else its tenant's own."""
        return EVERYONE if self.admin else Scope(tenant=self.tenant)

    def sees(self, tenant: str | None) -> bool:
        """A record of ``tenant`` is this caller's to see."""
        return self.scope.allows(tenant)


DEV_PRINCIPAL = Principal(role="admin", key_id="dev-mode")


def key_id(key: str) -> str:
    """A key's public name: ``key_`` and the first 16 hex digits of its SHA-256."""
    return "key_" + key_digest(key)[:16]


def _matches(presented: str, keys: list[str]) -> bool:
    # Compare against every key, so timing does not reveal which one is close.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def key_role(settings: Settings, presented: str) -> Role | None:
    """admin, producer, or None for an unknown key (every key compared)."""
    if _matches(presented, [k.get_secret_value() for k in settings.admin_api_keys]):
        return "admin"
    if _matches(presented, [k.get_secret_value() for k in settings.producer_api_keys]):
        return "producer"
    return None


class Disabled(Exception):
    """A tenant key whose tenant is disabled."""


def resolve(settings: Settings, presented: str,
            tenants: TenantDirectory | None = None) -> Principal | None:
    """The principal of a configured key, or of a tenant key (looked up through ``tenants``,
    cached), or None for an unknown one; raises Disabled for a disabled tenant's key."""
    role = key_role(settings, presented)
    if role is not None:
        return Principal(role=role, key_id=key_id(presented))
    if tenants is None or not presented.startswith(TENANT_KEY_PREFIX):
        return None
    return _tenant_principal(tenants.owner(key_digest(presented)))


async def resolve_async(settings: Settings, presented: str, tenants: TenantDirectory,
                        aclient: Any) -> Principal | None:
    """``resolve`` on the API's event loop: environment keys cost no I/O, a tenant key at most
    one Redis round trip (none while its answer is cached)."""
    role = key_role(settings, presented)
    if role is not None:
        return Principal(role=role, key_id=key_id(presented))
    if not presented.startswith(TENANT_KEY_PREFIX):
        return None
    return _tenant_principal(await tenants.owner_async(aclient, presented))


def _tenant_principal(owner: KeyOwner | None) -> Principal | None:
    if owner is None:
        return None
    if not owner.active:
        raise Disabled(owner.tenant)
    return Principal(role="producer", key_id=owner.key_id, tenant=owner.tenant)
