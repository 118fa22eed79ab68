"""The audit trail's Redis side: an append-only, hash-chained log of state changes.

Each entry carries the link hash of the one before (``prev``); its own link is
``sha1(prev "\\n" seq "\\n" sha256(content))``. The content digest (SHA-256, over the entry's
stored strings) is computed by the appender in Python; the link, the sequence number and the
order are taken by one Lua script in Redis, atomically, so appenders in many processes make one
chain without a lock or a read first. Redis Lua has ``redis.sha1hex`` and no SHA-256, hence the
split (docs/audit.md argues it). The script is queued on the caller's transaction where there is
one (a delivery's commit): an outcome costs no round trip of its own.

Entries live in one stream (ID ``{seq}-0``: the stream keeps them in order and refuses an ID
below its last, and entries with the same fields store only their values); each tenant has an
index stream of its sequence numbers, so a tenant's page reads its own entries only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from asgi_correlation_id import correlation_id as current_correlation_id

from compliance.store import keys

GENESIS = "0" * 40
# How listings and the CLI name the default tenant (records whose tenant is None).
DEFAULT_TENANT = "default"
# Actors that are not API keys.
SYSTEM_DELIVERY = "system:delivery"
SYSTEM_CLI = "system:cli"

# Delivery outcomes (the rest are named by whoever records them: "dead_letter.replay", ...).
DELIVERED = "delivery.delivered"
FAILED = "delivery.failed"

_FIELDS = ("at", "actor", "action", "tenant", "target", "cid", "detail")

# Appends n entries in order. KEYS: log, head, index set, then each entry's tenant index. ARGV: n,
# then per entry: at, actor, action, tenant, target, cid, detail, digest. Returns the last
# sequence number. A head that is gone while entries are not (deleted by hand) goes on after
# them, so the chain breaks visibly there instead of the XADD failing a delivery's commit; an
# XADD that fails all the same leaves a gap, found the same way.
_APPEND = """
local n = tonumber(ARGV[1])
local seq = redis.call('HINCRBY', KEYS[2], 'seq', n) - n
if seq == 0 then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  if top then
    seq = tonumber(string.match(top[1], '^(%d+)'))
    redis.call('HSET', KEYS[2], 'seq', seq + n)
  end
end
local prev = redis.call('HGET', KEYS[2], 'hash') or '""" + GENESIS + """'
local indexed = {}
for i = 0, n - 1 do
  local a = 2 + i * 8
  seq = seq + 1
  local id = seq .. '-0'
  redis.pcall('XADD', KEYS[1], id, 'at', ARGV[a], 'actor', ARGV[a + 1], 'action', ARGV[a + 2],
              'tenant', ARGV[a + 3], 'target', ARGV[a + 4], 'cid', ARGV[a + 5],
              'detail', ARGV[a + 6], 'prev', prev)
  prev = redis.sha1hex(prev .. '\\n' .. seq .. '\\n' .. ARGV[a + 7])
  local index = KEYS[4 + i]
  redis.pcall('XADD', index, id, 's', '')
  if not indexed[index] then
    indexed[index] = true
    redis.call('SADD', KEYS[3], index)
  end
end
redis.call('HSET', KEYS[2], 'hash', prev)
return seq
"""


def tenant_index(tenant: str | None) -> str:
    """The index stream of one tenant's entries (None: the default tenant)."""
    return keys.AUDIT_DEFAULT_INDEX if tenant is None else f"{keys.AUDIT_TENANT_INDEX}{tenant}"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What an appender knows: who did what, to what, for which tenant, in which request."""

    actor: str
    action: str
    at: float
    tenant: str | None = None
    target: str = ""
    correlation_id: str | None = None
    detail: Mapping[str, Any] | None = None

    def fields(self) -> list[str]:
        """The stored strings, in ``_FIELDS`` order."""
        detail = json.dumps(dict(self.detail), separators=(",", ":"), sort_keys=True,
                            default=str) if self.detail else ""
        return [str(int(self.at * 1000)), self.actor, self.action, self.tenant or "", self.target,
                self.correlation_id or "", detail]


def content_digest(fields: list[str]) -> str:
    """SHA-256 of an entry's stored strings (``_FIELDS`` order), hex."""
    canonical = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def link_hash(prev: str, seq: int, digest: str) -> str:
    """An entry's link: what the next entry carries as ``prev`` (the append script's sha1)."""
    return hashlib.sha1(f"{prev}\n{seq}\n{digest}".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry as stored (in Redis or in an archived segment)."""

    seq: int
    at_ms: int | str
    actor: str
    action: str
    tenant: str  # "" for the default tenant
    target: str
    cid: str
    detail: str  # compact JSON, or ""
    prev: str

    def stored_fields(self) -> list[str]:
        """The strings the content digest covers."""
        return [str(self.at_ms), self.actor, self.action, self.tenant, self.target, self.cid,
                self.detail]

    def link(self) -> str:
        """This entry's link hash, recomputed from what is stored."""
        return link_hash(self.prev, self.seq, content_digest(self.stored_fields()))

    def as_json(self) -> dict[str, Any]:
        """The stored form (one line of a segment)."""
        return {"seq": self.seq, "at": str(self.at_ms), "actor": self.actor,
                "action": self.action, "tenant": self.tenant, "target": self.target,
                "cid": self.cid, "detail": self.detail, "prev": self.prev}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Inverse of ``as_json`` (raises KeyError, TypeError or ValueError when malformed)."""
        return cls(seq=int(data["seq"]), at_ms=str(data["at"]), actor=str(data["actor"]),
                   action=str(data["action"]), tenant=str(data["tenant"]),
                   target=str(data["target"]), cid=str(data["cid"]),
                   detail=str(data["detail"]), prev=str(data["prev"]))

    @classmethod
    def from_stream(cls, stream_id: str, values: Mapping[str, str]) -> AuditEntry:
        """An entry read from the log stream (missing fields read as empty: the chain then
        fails on it)."""
        return cls(seq=int(stream_id.split("-", 1)[0]), at_ms=values.get("at", ""),
                   actor=values.get("actor", ""), action=values.get("action", ""),
                   tenant=values.get("tenant", ""), target=values.get("target", ""),
                   cid=values.get("cid", ""), detail=values.get("detail", ""),
                   prev=values.get("prev", ""))

    @property
    def at(self) -> float:
        """Epoch seconds (0 when the stored value is not a number)."""
        try:
            return int(self.at_ms) / 1000
        except ValueError:
            return 0.0

    @property
    def tenant_or_none(self) -> str | None:
        """The tenant, None for the default one."""
        return self.tenant or None


@dataclass(frozen=True, slots=True)
class Head:
    """The chain's end: the last sequence number given out, its link, and the last archived."""

    seq: int
    hash: str
    archived: int


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries newest first; ``next_cursor`` (a sequence number) is None on the last page."""

    items: list[AuditEntry]
    next_cursor: str | None


class AuditStore:
    """Appends to the chain, pages it, and trims what was archived."""

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time) -> None:
        self._r = client
        self._clock = clock
        self._append = client.register_script(_APPEND)

    @staticmethod
    def _call(events: list[AuditEvent]) -> tuple[list[str], list[str | int]]:
        """The append script's keys and arguments for ``events``, in order."""
        record_keys = [keys.AUDIT_LOG, keys.AUDIT_HEAD, keys.AUDIT_INDEXES]
        args: list[str | int] = [len(events)]
        for event in events:
            fields = event.fields()
            record_keys.append(tenant_index(event.tenant))
            args += [*fields, content_digest(fields)]
        return record_keys, args

    def record(self, *, actor: str, action: str, tenant: str | None = None, target: str = "",
               detail: Mapping[str, Any] | None = None, correlation_id: str | None = None) -> int:
        """Append one action now (one round trip) and return its sequence number: ``actor`` is
        a key id (``Principal.key_id``, never the key) or a ``system:`` name, ``action`` a dotted
        name (``breaker.reset``), ``tenant`` whose records it touched (None: the default
        tenant), ``correlation_id`` the request's (by default the one of the running request)."""
        return self.append(AuditEvent(
            actor=actor, action=action, at=self._clock(), tenant=tenant, target=target,
            correlation_id=correlation_id or current_correlation_id.get(), detail=detail))

    def append(self, event: AuditEvent) -> int:
        """Append ``event`` (one round trip); its sequence number."""
        record_keys, args = self._call([event])
        return int(self._append(keys=record_keys, args=args))

    @property
    def scripts(self) -> list[Any]:
        """The append script (an asyncio pipeline loads it before its MULTI)."""
        return [self._append]

    def append_on(self, pipe: Any, events: list[AuditEvent], *, loaded: bool = True) -> None:
        """Queue one append of ``events`` (in order) on ``pipe`` (sync or asyncio,
        transactional): they commit with the caller's writes, in one script call. ``loaded``:
        the pipeline loads ``scripts`` before it runs (the delivery engine's does, once per
        batch), so the append goes as EVALSHA; otherwise as EVAL with the text (a sync pipeline
        holding a script checks it with a round trip of its own)."""
        if not events:
            return
        record_keys, args = self._call(events)
        if loaded:
            self._append(keys=record_keys, args=args, client=pipe)
        else:
            pipe.eval(_APPEND, len(record_keys), *record_keys, *args)

    def head(self) -> Head:
        """The chain's end (zeros on a fresh log)."""
        raw: dict[str, str] = self._r.hgetall(keys.AUDIT_HEAD)  # type: ignore[assignment]
        return Head(seq=int(raw.get("seq", 0)), hash=raw.get("hash", GENESIS),
                    archived=int(raw.get("archived", 0)))

    def entries(self, *, after: int = 0, batch: int = 1000) -> Iterator[AuditEntry]:
        """Every entry in Redis with a sequence number above ``after``, in order."""
        start = f"({after}-0" if after else "-"
        while True:
            rows: list[Any] = self._r.xrange(keys.AUDIT_LOG, start, "+", count=batch)  # type: ignore[assignment]
            if not rows:
                return
            for stream_id, values in rows:
                yield AuditEntry.from_stream(stream_id, values)
            start = f"({rows[-1][0]}"

    def page(self, *, tenant: str | None, every_tenant: bool, limit: int,
             cursor: int | None = None) -> AuditPage:
        """Newest first: every entry (``every_tenant``) or one tenant's, from its index."""
        end = f"({cursor}-0" if cursor else "+"
        if every_tenant:
            rows: list[Any] = self._r.xrevrange(keys.AUDIT_LOG, end, "-", count=limit + 1)  # type: ignore[assignment]
            items = [AuditEntry.from_stream(i, v) for i, v in rows[:limit]]
        else:
            ids: list[Any] = self._r.xrevrange(tenant_index(tenant), end, "-", count=limit + 1)  # type: ignore[assignment]
            rows = ids
            pipe = self._r.pipeline(transaction=False)
            for stream_id, _ in ids[:limit]:
                pipe.xrange(keys.AUDIT_LOG, stream_id, stream_id)
            items = [AuditEntry.from_stream(*found[0]) for found in pipe.execute() if found]
        more = len(rows) > limit
        next_cursor = str(int(rows[limit - 1][0].split("-", 1)[0])) if more else None
        return AuditPage(items=items, next_cursor=next_cursor)

    def size(self) -> int:
        """Entries held in Redis."""
        return int(self._r.xlen(keys.AUDIT_LOG))  # type: ignore[arg-type]

    def trim_through(self, seq: int) -> None:
        """Drop entries up to ``seq`` (archived) from the log and every tenant index, and note
        it in the head."""
        indexes: set[str] = self._r.smembers(keys.AUDIT_INDEXES)  # type: ignore[assignment]
        pipe = self._r.pipeline(transaction=True)
        minid = f"{seq + 1}-0"
        pipe.xtrim(keys.AUDIT_LOG, minid=minid, approximate=False)
        for index in sorted(indexes):
            pipe.xtrim(index, minid=minid, approximate=False)
        pipe.hset(keys.AUDIT_HEAD, "archived", seq)
        pipe.execute()

    def lock(self, token: str, ttl: int) -> bool:
        """Take the archiver's lock (one archiver at a time across the fleet)."""
        return bool(self._r.set(keys.AUDIT_ARCHIVE_LOCK, token, nx=True, ex=ttl))

    def unlock(self, token: str) -> None:
        """Give the archiver's lock back if it is still ours."""
        self._r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                     "return redis.call('DEL', KEYS[1]) end return 0", 1,
                     keys.AUDIT_ARCHIVE_LOCK, token)
