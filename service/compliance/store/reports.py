"""Report records ``compliance:report:{id}`` (JSON with a TTL) and their run counters."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from compliance.store import keys
from compliance.store.records import EVERYONE, Scope


class ReportStatus(StrEnum):
    """Lifecycle of a report; ``completed`` and ``failed`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


FINAL = frozenset({ReportStatus.COMPLETED, ReportStatus.FAILED})


class ReportRecord(BaseModel):
    """What a client sees of a report: no evidence, no document, only the outcome."""

    report_id: str
    framework: str
    subject: str
    status: ReportStatus
    webhook_id: str
    webhook_url: str
    correlation_id: str | None = None
    # The tenant that asked for it; None is the default tenant.
    tenant: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    # The task run generating it (Celery's task id: the same across a retry or a redelivery).
    run_id: str | None = None


# KEYS: lease index. ARGV: now, lease until, limit, record key prefix.
# Reports whose lease lapsed and that are not settled: their lease is renewed and they are
# returned, to be sent again. Settled or expired ones leave the index.
_LAPSED = """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local raw = redis.call('GET', ARGV[4] .. id)
  local final = true
  if raw then
    local ok, rec = pcall(cjson.decode, raw)
    final = ok and (rec['status'] == 'completed' or rec['status'] == 'failed')
  end
  if final then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, id)
  end
end
return out
"""


class ReportStore:
    """Reads and writes report records; every write re-applies the record TTL.

    A report that is not settled also has a lease in ``compliance:schedule:reports``: when it
    lapses (its task was lost), the sweeper sends the task again.
    """

    def __init__(self, client: redis.Redis, *, ttl: int, runs_ttl: int) -> None:
        self._r = client
        self._ttl = ttl
        self._runs_ttl = runs_ttl
        self._lapsed = client.register_script(_LAPSED)

    def create(self, record: ReportRecord, *, lease_until: float) -> bool:
        """Write a new record with its lease; False when the id is already taken."""
        pipe = self._r.pipeline(transaction=True)
        pipe.set(keys.report_key(record.report_id), record.model_dump_json(), ex=self._ttl, nx=True)
        pipe.zadd(keys.REPORT_LEASE_INDEX, {record.report_id: lease_until})
        pipe.zadd(keys.REPORT_INDEX, {record.report_id: record.created_at}, nx=True)
        if record.tenant is not None:
            pipe.zadd(keys.tenant_report_index(record.tenant),
                      {record.report_id: record.created_at}, nx=True)
        created, *_ = pipe.execute()
        return bool(created)

    def lease(self, report_id: str, until: float) -> None:
        """Hold (or renew) a report's lease."""
        self._r.zadd(keys.REPORT_LEASE_INDEX, {report_id: until})

    def lapsed(self, *, now: float, lease_until: float, limit: int) -> list[str]:
        """Unsettled reports whose lease lapsed; their leases are renewed to ``lease_until``."""
        reply = self._lapsed(keys=[keys.REPORT_LEASE_INDEX],
                             args=[repr(now), repr(lease_until), limit, keys.REPORT_PREFIX])
        return [str(x) for x in reply]

    def get(self, report_id: str) -> ReportRecord | None:
        """The record, or None when unknown or expired."""
        raw = self._r.get(keys.report_key(report_id))
        return None if raw is None else ReportRecord.model_validate_json(raw)  # type: ignore[arg-type]

    def put(self, record: ReportRecord) -> ReportRecord:
        """Overwrite the record (only the report's own task writes after creation); a settled
        report leaves the lease index in the same transaction."""
        record = record.model_copy(update={"updated_at": time.time()})
        pipe = self._r.pipeline(transaction=True)
        pipe.set(keys.report_key(record.report_id), record.model_dump_json(), ex=self._ttl)
        if record.status in FINAL:
            pipe.zrem(keys.REPORT_LEASE_INDEX, record.report_id)
        pipe.execute()
        return record

    def delete(self, report_id: str) -> None:
        """Forget a record (used when the broker refused the task)."""
        self._r.delete(keys.report_key(report_id), f"{keys.REPORT_RUNS_PREFIX}{report_id}")
        self._r.zrem(keys.REPORT_LEASE_INDEX, report_id)
        self._r.zrem(keys.REPORT_INDEX, report_id)

    def page(self, *, offset: int, limit: int, now: float | None = None,
             scope: Scope = EVERYONE) -> tuple[list[ReportRecord], int]:
        """(records, how many are indexed): newest first; entries older than the record TTL
        leave the index first, and those whose record is gone leave it as they are met. A named
        tenant's page reads its own index; the default tenant's leaves named tenants' records
        out of the global one (its count is of the global index)."""
        now = time.time() if now is None else now
        named = not scope.everyone and scope.tenant is not None
        index = keys.tenant_report_index(scope.tenant or "") if named else keys.REPORT_INDEX
        self._r.zremrangebyscore(index, "-inf", f"({now - self._ttl!r}")
        ids: list[str] = [_text(m) for m in self._r.zrevrange(  # type: ignore[union-attr]
            index, offset, offset + limit - 1)]
        raws = self._r.mget([keys.report_key(i) for i in ids]) if ids else []
        stale = [i for i, raw in zip(ids, raws, strict=True) if raw is None]  # type: ignore[arg-type]
        if stale:
            self._r.zrem(index, *stale)
        records = [ReportRecord.model_validate_json(raw) for raw in raws  # type: ignore[union-attr]
                   if raw is not None]
        records = [r for r in records if scope.allows(r.tenant)]
        return records, int(self._r.zcard(index))  # type: ignore[arg-type]

    def count_run(self, report_id: str) -> int:
        """Count one more start of the report's task (redeliveries included)."""
        key = f"{keys.REPORT_RUNS_PREFIX}{report_id}"
        pipe = self._r.pipeline()
        pipe.incr(key)
        pipe.expire(key, self._runs_ttl)
        runs, _ = pipe.execute()
        return int(runs)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
