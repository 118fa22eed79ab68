"""Report records ``compliance:report:{id}`` (JSON with a TTL) and their run counters."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from compliance.store import keys


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
    metadata: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None


class ReportStore:
    """Reads and writes report records; every write re-applies the record TTL."""

    def __init__(self, client: redis.Redis, *, ttl: int, runs_ttl: int) -> None:
        self._r = client
        self._ttl = ttl
        self._runs_ttl = runs_ttl

    def create(self, record: ReportRecord) -> bool:
        """Write a new record; False when the id is already taken."""
        return bool(self._r.set(keys.report_key(record.report_id), record.model_dump_json(),
                                ex=self._ttl, nx=True))

    def get(self, report_id: str) -> ReportRecord | None:
        """The record, or None when unknown or expired."""
        raw = self._r.get(keys.report_key(report_id))
        return None if raw is None else ReportRecord.model_validate_json(raw)  # type: ignore[arg-type]

    def put(self, record: ReportRecord) -> ReportRecord:
        """Overwrite the record (only the report's own task writes after creation)."""
        record = record.model_copy(update={"updated_at": time.time()})
        self._r.set(keys.report_key(record.report_id), record.model_dump_json(), ex=self._ttl)
        return record

    def delete(self, report_id: str) -> None:
        """Forget a record (used when the broker refused the task)."""
        self._r.delete(keys.report_key(report_id), f"{keys.REPORT_RUNS_PREFIX}{report_id}")

    def count_run(self, report_id: str) -> int:
        """Count one more start of the report's task (redeliveries included)."""
        key = f"{keys.REPORT_RUNS_PREFIX}{report_id}"
        pipe = self._r.pipeline()
        pipe.incr(key)
        pipe.expire(key, self._runs_ttl)
        runs, _ = pipe.execute()
        return int(runs)
