"""Status records ``webhook_status:{id}`` and their sorted-set indexes."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from compliance.settings import Settings
from compliance.store import keys
from compliance.store.records import EVERYONE, Scope, Status, WebhookStatus

# Writes the record with the TTL of its status and moves it from its old status's index to its
# new one, atomically. Each record is in exactly one index (listing every status merges them).
# A record of a named tenant (``tenant`` not '') is also moved between that tenant's status
# indexes (the default tenant's records are only in the global ones).
# put_status(record key, new-status index, index prefix, json, ttl, score, id, new status,
# tenant); also used by the schedule's accept script.
PUT_STATUS_FN = """
local function put_status(record, index, prefix, json, ttl, score, id, status, tenant)
  local old = redis.call('GET', record)
  local tprefix = nil
  if tenant and tenant ~= '' then
    tprefix = '""" + keys.TENANT_STATUS_INDEX_PREFIX + """' .. tenant .. ':'
  end
  if old then
    local ok, decoded = pcall(cjson.decode, old)
    if ok and decoded['status'] and decoded['status'] ~= status then
      redis.call('ZREM', prefix .. decoded['status'], id)
      if tprefix then
        redis.call('ZREM', tprefix .. decoded['status'], id)
      end
    end
  end
  redis.call('SET', record, json, 'EX', tonumber(ttl))
  redis.call('ZADD', index, score, id)
  if tprefix then
    redis.call('ZADD', tprefix .. status, score, id)
  end
end
"""
# KEYS: record, new-status index; ARGV: json, ttl, score, id, new status, prefix, tenant ('').
_PUT = PUT_STATUS_FN + """
put_status(KEYS[1], KEYS[2], ARGV[6], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7])
return 1
"""


@dataclass(frozen=True)
class CleanupRule:
    """Which status records cleanup deletes (``POST /webhook-cleanup`` and ``compliance cleanup``).

    Records of ``status`` (any status when None) last changed more than ``older_than_days`` ago
    (any age when None). Naming neither is refused: it would wipe every record, pending and
    retrying ones included; ``older_than_days=0`` says so explicitly.
    """

    status: Status | None
    older_than_days: float | None

    def __post_init__(self) -> None:
        if self.status is None and self.older_than_days is None:
            raise ValueError("name a status, an age, or both (older_than_days=0 means every age)")
        if self.older_than_days is not None and not 0 <= self.older_than_days <= 3650:
            raise ValueError("older_than_days must be between 0 and 3650")

    @property
    def older_than_seconds(self) -> float:
        """The age in seconds (0: every age)."""
        return (self.older_than_days or 0) * 86400


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first; ``next_cursor`` is None on the last page."""

    items: list[WebhookStatus]
    next_cursor: str | None
    total: int


def encode_cursor(score: float, member: str) -> str:
    """Opaque cursor pointing after ``member``."""
    return base64.urlsafe_b64encode(f"{score!r}|{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of encode_cursor; raises ValueError on a malformed cursor.

    The score must be finite: Redis refuses a NaN range bound (the client would see a 503), and
    scores are timestamps, so an infinite one never comes from encode_cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        text, member = raw.split("|", 1)
        score = float(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if not math.isfinite(score):
        raise ValueError("malformed cursor")
    return score, member


class StatusStore:
    """Reads and writes status records; every write re-applies the TTL of the new status."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self._settings = settings
        self._put = client.register_script(_PUT)

    def put(self, record: WebhookStatus, pipe: Any = None) -> None:
        """Write ``record`` with its status's TTL and index it under that status (on ``pipe``,
        when given, so that it commits with the caller's other writes).

        On a pipeline the script goes as EVAL with its text (a few hundred bytes): a pipeline
        holding a registered script checks it with SCRIPT EXISTS, an extra round trip on every
        execute, and EVALSHA inside MULTI cannot fall back (a NOSCRIPT there would leave the
        transaction's other writes done)."""
        record_keys, args = self.put_call(record)
        if pipe is None:
            self._put(keys=record_keys, args=args)
        else:
            pipe.eval(_PUT, len(record_keys), *record_keys, *args)

    def put_call(self, record: WebhookStatus) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of ``PUT_STATUS_FN``'s call for ``record`` (the order the
        scripts that write a record take them in: record, index; json, ttl, score, id,
        status, index prefix, tenant)."""
        return ([keys.status_key(record.webhook_id), keys.status_index(record.status)],
                [self.serialise(record), self._settings.ttl_for_status(record.status),
                 repr(record.updated_at), record.webhook_id, record.status.value,
                 keys.STATUS_INDEX_BY, record.tenant or ""])

    @staticmethod
    def serialise(record: WebhookStatus) -> str:
        """The stored JSON: fields that are null are left out (a delivered record is half the
        size)."""
        return record.model_dump_json(exclude_none=True)

    @property
    def scripts(self) -> list[Any]:
        """The Lua scripts that may run inside a pipeline (loaded before an asyncio one)."""
        return []

    def get(self, webhook_id: str) -> WebhookStatus | None:
        """The record, or None when it never existed or has expired."""
        raw = self._r.get(keys.status_key(webhook_id))
        return WebhookStatus.model_validate_json(raw) if raw else None

    def delete(self, webhook_id: str) -> None:
        """Remove a record and its index entries (used when enqueueing failed)."""
        self._r.delete(keys.status_key(webhook_id))
        self._remove_from_indexes([webhook_id])

    def ttl(self, webhook_id: str) -> int:
        """Seconds the record has left (-2: gone)."""
        return int(self._r.ttl(keys.status_key(webhook_id)))

    def prune(self, now: float | None = None) -> int:
        """Drop index entries whose record has certainly expired (older than its status TTL)."""
        now = time.time() if now is None else now
        pipe = self._r.pipeline(transaction=False)
        # The index of every status that releases before this one kept (gone in the background).
        pipe.unlink(keys.LEGACY_STATUS_INDEX_ALL)
        for status in Status:
            ttl = self._settings.ttl_for_status(status)
            pipe.zremrangebyscore(keys.status_index(status), "-inf", f"({now - ttl}")
        return sum(int(n) for n in pipe.execute()[1:])

    def count(self, status: Status | None = None, *, scope: Scope = EVERYONE) -> int:
        """Indexed records (after pruning, so nearly exact) that ``scope`` sees; the default
        tenant's are every record less the named tenants' (``tenant_ids``)."""
        if not scope.everyone:
            if scope.tenant is not None:
                return self.tenant_counts([scope.tenant], status)
            return max(0, self.count(status) - self.tenant_counts(self._tenant_ids(), status))
        if status is None:
            return sum(self.counts().values())
        return int(self._r.zcard(keys.status_index(status)))

    def counts(self) -> dict[str, int]:
        """Record count per status, for metrics."""
        pipe = self._r.pipeline(transaction=False)
        for status in Status:
            pipe.zcard(keys.status_index(status))
        return {s.value: int(n) for s, n in zip(Status, pipe.execute(), strict=True)}

    def outcomes(self, *, now: float, window: float, buckets: int) -> list[tuple[int, int]]:
        """(delivered, failed) per equal bucket of the last ``window`` seconds, oldest first,
        counted from the status indexes (a delivered record is indexed only as long as it
        lives, ``status_ttl_delivered``: older buckets read low)."""
        width = window / buckets
        start = now - window
        pipe = self._r.pipeline(transaction=False)
        for status in (Status.DELIVERED, Status.FAILED):
            for n in range(buckets):
                low, high = start + n * width, start + (n + 1) * width
                pipe.zcount(keys.status_index(status), repr(low), f"({high!r}")
        counts = [int(c) for c in pipe.execute()]
        return list(zip(counts[:buckets], counts[buckets:], strict=True))

    def page(
        self, *, status: Status | None = None, limit: int = 50, cursor: str | None = None,
        scope: Scope = EVERYONE,
    ) -> Page:
        """Newest first (by last status change), filtered by status, cursor-paginated.

        A named tenant's page reads that tenant's indexes (the same cost as the global one). The
        default tenant's reads the global indexes and skips named tenants' records, reading at
        most ``10 * limit + 100`` entries per page (then the page is short and has a cursor)."""
        statuses = [status] if status else list(Status)
        named = not scope.everyone and scope.tenant is not None
        if named:
            indexes = [keys.tenant_status_index(scope.tenant or "", s) for s in statuses]
        else:
            indexes = [keys.status_index(s) for s in statuses]
        self.prune()
        if named:
            self._prune_tenant(scope.tenant or "")
        elif not scope.everyone and self.count(status, scope=scope) == 0:
            return Page(items=[], next_cursor=None, total=0)  # nothing to walk past
        after = decode_cursor(cursor) if cursor else None
        items: list[WebhookStatus] = []
        last: tuple[float, str] | None = after
        exhausted = False
        budget = 10 * limit + 100
        while len(items) < limit and not exhausted and budget > 0:
            want = min(limit - len(items), budget)
            batch = self._merged_after(indexes, last, want + 1)
            exhausted = len(batch) <= want
            batch = batch[:want]
            budget -= len(batch)
            if not batch:
                break
            records = self._r.mget([keys.status_key(member) for member, _ in batch])
            stale = []
            for (member, score), raw in zip(batch, records, strict=True):
                last = (score, member)
                if raw is None:
                    stale.append(member)
                    continue
                record = WebhookStatus.model_validate_json(raw)
                if scope.allows(record.tenant):
                    items.append(record)
            if stale:
                self._remove_from_indexes(stale, tenant=scope.tenant if named else None)
        next_cursor = encode_cursor(*last) if last and not exhausted else None
        if next_cursor and not self._merged_after(indexes, last, 1):
            next_cursor = None
        total = self.count(status, scope=scope)
        return Page(items=items, next_cursor=next_cursor, total=total)

    def _prune_tenant(self, tenant: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        pipe = self._r.pipeline(transaction=False)
        for status in Status:
            ttl = self._settings.ttl_for_status(status)
            pipe.zremrangebyscore(keys.tenant_status_index(tenant, status), "-inf",
                                  f"({now - ttl}")
        pipe.execute()

    def tenant_counts(self, tenants: list[str], status: Status | None = None) -> int:
        """Indexed records of the named ``tenants`` (of ``status``, or every status)."""
        if not tenants:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for tenant in tenants:
            for s in ([status] if status else list(Status)):
                pipe.zcard(keys.tenant_status_index(tenant, s))
        return sum(int(n) for n in pipe.execute())

    def _merged_after(
        self, indexes: list[str], after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """Up to ``count`` members of any of ``indexes`` strictly after ``after``, in (score
        desc, member desc) order (a record is in one index at a time)."""
        rows = [row for index in indexes for row in self._range_after(index, after, count)]
        if len(indexes) > 1:
            rows.sort(key=lambda row: (row[1], row[0]), reverse=True)
        return rows[:count]

    def _range_after(
        self, index: str, after: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """Up to ``count`` members strictly after ``after`` in (score desc, member desc) order."""
        if after is None:
            rows = self._r.zrevrange(index, 0, count - 1, withscores=True)
            return [(str(m), float(s)) for m, s in rows]  # type: ignore[union-attr,str-unpack,misc]
        score, member = after
        out: list[tuple[str, float]] = []
        offset = 0
        # Members sharing the cursor's score come in descending member order: skip up to it.
        while len(out) < count:
            chunk: list[tuple[str, float]] = self._r.zrevrangebyscore(  # type: ignore[assignment]
                index, score, "-inf", start=offset, num=count + 16, withscores=True
            )
            if not chunk:
                break
            offset += len(chunk)
            for m, s in chunk:
                if float(s) == score and m >= member:
                    continue
                out.append((m, float(s)))
        return out[:count]

    def _tenant_ids(self) -> list[str]:
        return [str(m) for m in self._r.zrange(keys.TENANT_INDEX, 0, -1)]  # type: ignore[union-attr]

    def _remove_from_indexes(self, members: Iterable[str], *, tenant: str | None = None) -> None:
        members = list(members)
        pipe = self._r.pipeline(transaction=False)
        for status in Status:
            pipe.zrem(keys.status_index(status), *members)
            if tenant is not None:
                pipe.zrem(keys.tenant_status_index(tenant, status), *members)
        pipe.execute()

    def apply(self, rule: CleanupRule) -> int:
        """Delete the records ``rule`` selects; returns records deleted."""
        return self.cleanup(status=rule.status, older_than_seconds=rule.older_than_seconds)

    def cleanup(
        self, *, status: Status | None, older_than_seconds: float, batch_size: int = 500
    ) -> int:
        """Delete matching records and index entries in small batches; returns records deleted."""
        cutoff = time.time() - older_than_seconds
        deleted = 0
        for index in [keys.status_index(s) for s in ([status] if status else list(Status))]:
            while True:
                members: list[str] = self._r.zrangebyscore(  # type: ignore[assignment]
                    index, "-inf", cutoff, start=0, num=batch_size)
                if not members:
                    break
                pipe = self._r.pipeline(transaction=False)
                for member in members:
                    pipe.getdel(keys.status_key(member))
                raws = pipe.execute()
                deleted += sum(1 for raw in raws if raw is not None)
                self._remove_from_indexes(members)
                self._remove_from_tenant_indexes(members, raws)
                self._cancel_deliveries(members)
        return deleted

    def _remove_from_tenant_indexes(self, members: list[str], raws: list[Any]) -> None:
        """Named tenants' index entries of deleted records (read from the records themselves)."""
        pipe = self._r.pipeline(transaction=False)
        queued = False
        for member, raw in zip(members, raws, strict=True):
            tenant = WebhookStatus.model_validate_json(raw).tenant if raw else None
            if tenant is not None:
                for status in Status:
                    pipe.zrem(keys.tenant_status_index(tenant, status), member)
                queued = True
        if queued:
            pipe.execute()

    def _cancel_deliveries(self, members: list[str]) -> None:
        """A pending or retrying webhook whose record is cleaned up is not delivered any more:
        its envelope goes and it leaves the schedule (a queued signal then finds nothing to
        claim). An attempt already in flight may still land and write a new record."""
        pipe = self._r.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.webhook_key(member), "tenant")
        tenants = pipe.execute()
        pipe = self._r.pipeline(transaction=False)
        for member, tag in zip(members, tenants, strict=True):
            if tag is not None:  # it no longer counts against its tenant's cap
                pipe.zrem(f"{keys.TENANT_LIVE_PREFIX}{tag}", member)
        pipe.delete(*[keys.webhook_key(member) for member in members])
        pipe.zrem(keys.DUE_INDEX, *members)
        pipe.zrem(keys.LEASE_INDEX, *members)
        pipe.execute()
