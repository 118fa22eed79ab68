"""Console sessions ``compliance:console_session:{sha256(token)}``: who signed in, with a
sliding TTL. Neither the cookie's token nor the API key is stored: only their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import time

import redis
from pydantic import BaseModel

from compliance.store import keys


class ConsoleSession(BaseModel):
    """One signed-in browser."""

    role: str  # admin or producer
    key_digest: str  # SHA-256 of the API key signed in with: the key is checked again per request
    csrf: str  # the token every state-changing request of this session must carry
    created_at: float
    tenant: str | None = None  # a tenant key's tenant (None: admin or the default tenant)


def digest(value: str) -> str:
    """Hex SHA-256 of ``value`` (tokens and keys are random and long: no salt needed)."""
    return hashlib.sha256(value.encode()).hexdigest()


def _key(token: str) -> str:
    return f"{keys.CONSOLE_SESSION_PREFIX}{digest(token)}"


class ConsoleSessionStore:
    """Creates, reads (renewing the TTL) and ends console sessions."""

    def __init__(self, client: redis.Redis, *, ttl: int) -> None:
        self._r = client
        self._ttl = ttl

    def create(self, *, role: str, api_key: str,
               tenant: str | None = None) -> tuple[str, ConsoleSession]:
        """A new session: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(role=role, key_digest=digest(api_key),
                                 csrf=secrets.token_urlsafe(32), created_at=time.time(),
                                 tenant=tenant)
        self._r.set(_key(token), session.model_dump_json(), ex=self._ttl)
        return token, session

    def get(self, token: str) -> ConsoleSession | None:
        """The live session of ``token`` (its TTL starts again), or None."""
        pipe = self._r.pipeline(transaction=False)
        pipe.get(_key(token))
        pipe.expire(_key(token), self._ttl)
        raw, _ = pipe.execute()
        return ConsoleSession.model_validate_json(raw) if raw else None

    def delete(self, token: str) -> None:
        """End a session (sign out)."""
        self._r.delete(_key(token))
