"""Tenants, their producer keys (stored hashed) and their signing secrets (stored encrypted).

- ``compliance:tenant:{id}``: hash (name, created_at, disabled); ``compliance:index:tenants``
  lists them by creation time.
- ``compliance:tenant_key:{sha256(key)}``: the tenant and key id of one producer key (the key
  itself is never stored: it is random and 256 bits long, so its SHA-256 is enough);
  ``compliance:tenant_keys:{id}`` maps each of a tenant's key ids to that digest.
- ``compliance:tenant_secrets:{id}``: JSON list of the tenant's signing secrets, each encrypted
  with the deployment's key (Fernet: AES-128-CBC with HMAC-SHA256) and with its ``expires_at``.

A key is looked up in one round trip (a script reads the key's record and its tenant's state).
The API and the workers keep what they read in small in-process caches (``TtlCache``), so the
hot paths touch Redis at most once per key or tenant per cache period.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel

from compliance.store import keys

TENANT_KEY_PREFIX = "ctk_"  # every tenant key starts so; other keys never reach Redis
TENANT_ID_PATTERN = r"^ten_[0-9a-f]{16}$"
KEY_ID_PATTERN = r"^key_[0-9a-f]{16}$"

# ARGV: key digest. Returns false for an unknown key, else {key record JSON, tenant state}
# where the state is 'active', 'disabled' or 'gone' (the tenant was deleted).
_LOOKUP = f"""
local raw = redis.call('GET', '{keys.TENANT_KEY_PREFIX}' .. ARGV[1])
if not raw then
  return false
end
local ok, rec = pcall(cjson.decode, raw)
if not ok or type(rec['tenant']) ~= 'string' then
  return false
end
local state = redis.call('HGET', '{keys.TENANT_PREFIX}' .. rec['tenant'], 'disabled')
if not state then
  return {{raw, 'gone'}}
end
if state == '1' then
  return {{raw, 'disabled'}}
end
return {{raw, 'active'}}
"""


def key_digest(key: str) -> str:
    """Hex SHA-256 of a key: what is stored of it, and (its first 16 digits) its key id."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of_digest(digest: str) -> str:
    """A key's public name from its digest (``key_`` and 16 hex digits)."""
    return "key_" + digest[:16]


class TenancyUnavailable(Exception):
    """No encryption key is configured: tenant secrets cannot be written or read."""


class NotFound(Exception):
    """No such tenant (or key)."""


class TenantKey(BaseModel):
    """One producer key of a tenant, as listed (never the key)."""

    key_id: str
    created_at: float


class SecretInfo(BaseModel):
    """One signing secret of a tenant, as listed (never the secret)."""

    secret_id: str
    created_at: float
    expires_at: float | None = None


class Tenant(BaseModel):
    """A tenant, with its keys and secrets listed."""

    tenant_id: str
    name: str
    disabled: bool
    created_at: float
    keys: list[TenantKey] = []
    secrets: list[SecretInfo] = []


@dataclass(frozen=True)
class KeyOwner:
    """Who a tenant key belongs to (``active`` False: its tenant is disabled)."""

    tenant: str
    key_id: str
    active: bool


@dataclass(frozen=True)
class IssuedSecret:
    """A new signing secret (shown once) and when the ones before it stop signing."""

    secret_id: str
    secret: str
    created_at: float
    previous_expire_at: float | None


@dataclass(frozen=True)
class SigningSecret:
    """A decrypted secret with its end (None: until rotated)."""

    secret: str
    expires_at: float | None

    def live(self, now: float) -> bool:
        """Still signing at ``now``."""
        return self.expires_at is None or self.expires_at > now


V = TypeVar("V")


class TtlCache(Generic[V]):
    """A small thread-safe map whose entries are kept ``ttl`` seconds (0: nothing is kept);
    at ``max_entries`` it starts over rather than evicting one by one."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, V | None]:
        """(found, value)."""
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            return False, None
        return True, item[1]

    def put(self, key: str, value: V) -> None:
        """Keep ``value`` for the cache's TTL."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self._max:
                self._items.clear()
            self._items[key] = (self._clock() + self.ttl, value)

    def clear(self) -> None:
        """Forget everything (this process changed what is cached)."""
        with self._lock:
            self._items.clear()


def new_tenant_id() -> str:
    """``ten_`` and 16 hex digits."""
    return f"ten_{uuid.uuid4().hex[:16]}"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class TenantStore:
    """Tenants, keys and secrets in Redis; secrets encrypted with ``cipher`` (None: not
    configured, and every secret operation raises TenancyUnavailable)."""

    def __init__(self, client: redis.Redis, *, cipher: MultiFernet | None, drain_ttl: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._cipher = cipher
        self._drain_ttl = drain_ttl
        self._clock = clock
        self._lookup = client.register_script(_LOOKUP)
        self._lookup_scripts: dict[int, Any] = {}

    @staticmethod
    def build_cipher(encryption_keys: list[str]) -> MultiFernet | None:
        """The first key encrypts, every key decrypts (so the key itself can be rotated)."""
        if not encryption_keys:
            return None
        return MultiFernet([Fernet(k.encode()) for k in encryption_keys])

    @property
    def configured(self) -> bool:
        """An encryption key is configured."""
        return self._cipher is not None

    def _need_cipher(self) -> MultiFernet:
        if self._cipher is None:
            raise TenancyUnavailable("COMPLIANCE_TENANT_ENCRYPTION_KEYS is not set: tenant signing "
                                     "secrets cannot be stored")
        return self._cipher

    # --- tenants ---------------------------------------------------------------------------
    def create(self, name: str) -> tuple[Tenant, IssuedSecret]:
        """A new tenant with its first signing secret."""
        self._need_cipher()
        tenant_id = new_tenant_id()
        now = self._clock()
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(keys.tenant_key(tenant_id),
                  mapping={"name": name, "created_at": repr(now), "disabled": "0"})
        pipe.zadd(keys.TENANT_INDEX, {tenant_id: now})
        pipe.execute()
        issued = self.rotate_secret(tenant_id, overlap_seconds=0)
        return Tenant(tenant_id=tenant_id, name=name, disabled=False, created_at=now), issued

    def exists(self, tenant_id: str) -> bool:
        """The tenant exists (disabled or not)."""
        return bool(self._r.exists(keys.tenant_key(tenant_id)))

    def get(self, tenant_id: str) -> Tenant | None:
        """One tenant with its keys and secrets (never the keys or secrets themselves)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(keys.tenant_key(tenant_id))
        pipe.hgetall(keys.tenant_keys_key(tenant_id))
        pipe.get(keys.tenant_secrets_key(tenant_id))
        fields, key_map, raw_secrets = pipe.execute()
        if not fields:
            return None
        return Tenant(
            tenant_id=tenant_id, name=_text(fields.get("name", "")),
            disabled=_text(fields.get("disabled", "0")) == "1",
            created_at=float(fields.get("created_at", 0)),
            keys=sorted((TenantKey(key_id=_text(k), created_at=json.loads(v)["created_at"])
                         for k, v in key_map.items()), key=lambda k: k.created_at),
            secrets=[SecretInfo(secret_id=s["secret_id"], created_at=s["created_at"],
                                expires_at=s.get("expires_at"))
                     for s in self._stored_secrets(raw_secrets)],
        )

    def all(self) -> list[Tenant]:
        """Every tenant, oldest first."""
        ids = [_text(m) for m in self._r.zrange(keys.TENANT_INDEX, 0, -1)]  # type: ignore[union-attr]
        out = []
        for tenant_id in ids:
            tenant = self.get(tenant_id)
            if tenant is None:
                self._r.zrem(keys.TENANT_INDEX, tenant_id)
            else:
                out.append(tenant)
        return out

    def ids(self) -> list[str]:
        """Every tenant id."""
        return [_text(m) for m in self._r.zrange(keys.TENANT_INDEX, 0, -1)]  # type: ignore[union-attr]

    def set_disabled(self, tenant_id: str, disabled: bool) -> bool:
        """Disable (its keys are refused) or enable a tenant; False when unknown."""
        if not self.exists(tenant_id):
            return False
        self._r.hset(keys.tenant_key(tenant_id), "disabled", "1" if disabled else "0")
        return True

    def delete(self, tenant_id: str) -> bool:
        """Delete a tenant and its keys at once; its secrets stay ``drain_ttl`` seconds so that
        webhooks it queued are still delivered signed. False when unknown."""
        key_map = self._r.hgetall(keys.tenant_keys_key(tenant_id))
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(keys.tenant_key(tenant_id))
        pipe.zrem(keys.TENANT_INDEX, tenant_id)
        for raw in key_map.values():  # type: ignore[union-attr]
            pipe.delete(keys.tenant_api_key(json.loads(raw)["digest"]))
        pipe.delete(keys.tenant_keys_key(tenant_id))
        pipe.expire(keys.tenant_secrets_key(tenant_id), self._drain_ttl)
        existed, *_ = pipe.execute()
        return bool(existed)

    # --- keys ------------------------------------------------------------------------------
    def issue_key(self, tenant_id: str) -> tuple[str, str]:
        """(key id, key): a new producer key of the tenant; the key is shown once."""
        if not self.exists(tenant_id):
            raise NotFound(tenant_id)
        key = TENANT_KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(key)
        key_id = key_id_of_digest(digest)
        now = self._clock()
        pipe = self._r.pipeline(transaction=True)
        pipe.set(keys.tenant_api_key(digest),
                 json.dumps({"tenant": tenant_id, "key_id": key_id, "created_at": now}))
        pipe.hset(keys.tenant_keys_key(tenant_id), key_id,
                  json.dumps({"digest": digest, "created_at": now}))
        pipe.execute()
        return key_id, key

    def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        """Revoke one key; False when the tenant has no such key."""
        raw = self._r.hget(keys.tenant_keys_key(tenant_id), key_id)
        if raw is None:
            return False
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(keys.tenant_api_key(json.loads(raw)["digest"]))  # type: ignore[arg-type]
        pipe.hdel(keys.tenant_keys_key(tenant_id), key_id)
        pipe.execute()
        return True

    def owner(self, digest: str) -> KeyOwner | None:
        """Whose key this is, by the key's digest (one round trip), or None for an unknown key
        or a deleted tenant."""
        return _owner(self._lookup(args=[digest]))

    async def owner_async(self, aclient: Any, digest: str) -> KeyOwner | None:
        """``owner`` on an asyncio client (the API's event loop)."""
        script = self._lookup_scripts.get(id(aclient))
        if script is None:
            script = self._lookup_scripts[id(aclient)] = aclient.register_script(_LOOKUP)
        return _owner(await script(args=[digest]))

    # --- secrets ---------------------------------------------------------------------------
    def rotate_secret(self, tenant_id: str, *, overlap_seconds: float) -> IssuedSecret:
        """Add a new signing secret; the live ones before it keep signing ``overlap_seconds``
        (those with an earlier end keep it), expired ones are dropped. The new one is shown once."""
        cipher = self._need_cipher()
        secret = new_signing_secret()
        key = keys.tenant_secrets_key(tenant_id)
        with self._r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, keys.tenant_key(tenant_id))  # type: ignore[no-untyped-call]
                    if not pipe.exists(keys.tenant_key(tenant_id)):
                        raise NotFound(tenant_id)
                    now = self._clock()
                    end = now + overlap_seconds
                    kept = []
                    previous_end: float | None = None
                    for item in self._stored_secrets(pipe.get(key)):
                        expires = item.get("expires_at")
                        if expires is not None and expires <= now:
                            continue
                        item["expires_at"] = end if expires is None else min(expires, end)
                        previous_end = max(previous_end or 0.0, item["expires_at"])
                        kept.append(item)
                    issued = IssuedSecret(secret_id=f"sec_{uuid.uuid4().hex[:12]}", secret=secret,
                                          created_at=now, previous_expire_at=previous_end)
                    kept.append({"secret_id": issued.secret_id, "created_at": now,
                                 "expires_at": None,
                                 "ciphertext": cipher.encrypt(secret.encode()).decode()})
                    pipe.multi()
                    pipe.set(key, json.dumps(kept))
                    pipe.execute()
                    return issued
                except redis.WatchError:
                    continue

    def signing_secrets(self, tenant_id: str) -> list[SigningSecret]:
        """The tenant's secrets, decrypted (expired ones included: the caller checks the time).
        A secret the configured keys cannot decrypt is left out."""
        cipher = self._cipher
        if cipher is None:
            return []
        out = []
        for item in self._stored_secrets(self._r.get(keys.tenant_secrets_key(tenant_id))):
            try:
                plain = cipher.decrypt(item["ciphertext"].encode()).decode()
            except (InvalidToken, KeyError):
                continue
            out.append(SigningSecret(secret=plain, expires_at=item.get("expires_at")))
        return out

    @staticmethod
    def _stored_secrets(raw: Any) -> list[dict[str, Any]]:
        if not raw:
            return []
        items = json.loads(raw)
        return items if isinstance(items, list) else []


class TenantDirectory:
    """What the API and workers ask on their hot paths, cached in-process: a key's owner
    (``key_ttl`` seconds) and a tenant's signing secrets (``secret_ttl`` seconds)."""

    def __init__(self, store: TenantStore, *, key_ttl: float, secret_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._owners: TtlCache[KeyOwner | None] = TtlCache(key_ttl, clock=clock)
        self._secrets: TtlCache[list[SigningSecret]] = TtlCache(secret_ttl, clock=clock)

    def owner(self, digest: str) -> KeyOwner | None:
        """The owner of a tenant key, by its digest (a cached answer is at most ``key_ttl``
        seconds old)."""
        found, owner = self._owners.get(digest)
        if not found:
            owner = self.store.owner(digest)
            self._owners.put(digest, owner)
        return owner

    async def owner_async(self, aclient: Any, presented: str) -> KeyOwner | None:
        """``owner`` on the API's event loop."""
        digest = key_digest(presented)
        found, owner = self._owners.get(digest)
        if not found:
            owner = await self.store.owner_async(aclient, digest)
            self._owners.put(digest, owner)
        return owner

    def secrets(self, tenant_id: str, now: float) -> list[str]:
        """The tenant's secrets signing at ``now``, from a list at most ``secret_ttl`` seconds
        old: a rotation is seen within that bound (until then the secrets read before it keep
        signing, so there is never a moment with none), and an end already read is kept to
        the second."""
        found, secrets = self._secrets.get(tenant_id)
        if not found or secrets is None:
            secrets = self.store.signing_secrets(tenant_id)
            self._secrets.put(tenant_id, secrets)
        return [s.secret for s in secrets if s.live(now)]

    def forget(self) -> None:
        """Drop cached answers (this process changed keys, tenants or secrets)."""
        self._owners.clear()
        self._secrets.clear()


def _owner(reply: Any) -> KeyOwner | None:
    if not reply:
        return None
    raw, state = _text(reply[0]), _text(reply[1])
    if state == "gone":
        return None
    rec = json.loads(raw)
    return KeyOwner(tenant=rec["tenant"], key_id=rec["key_id"], active=state == "active")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
