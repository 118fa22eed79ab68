"""Who is calling: the role of the presented key, a stable id for it, and its tenant.

The key id names a key in logs and in the audit trail without revealing it: a short SHA-256
digest, the same in every process. A key configured through the environment belongs to no
tenant (``tenant`` is None: the default tenant).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from compliance.settings import Settings

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


DEV_PRINCIPAL = Principal(role="admin", key_id="dev-mode")


def key_id(key: str) -> str:
    """A key's public name: ``key_`` and the first 16 hex digits of its SHA-256."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


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


def resolve(settings: Settings, presented: str) -> Principal | None:
    """The principal of a configured key, or None for an unknown one."""
    role = key_role(settings, presented)
    return None if role is None else Principal(role=role, key_id=key_id(presented))
