"""Retention: what ``compliance cleanup`` (and the chart's CronJob) removes, in one pass.

- status records selected by a ``CleanupRule`` (the rule ``POST /webhook-cleanup`` applies);
- index entries whose status record or dead letter has expired (the stores' ``prune``);
- report documents and evidence last written more than ``report_ttl`` ago (their Redis record
  has expired by then, so nothing can serve them any more).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from compliance.reports.storage import ReportStorage
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.statuses import CleanupRule, StatusStore


@dataclass(frozen=True)
class RetentionResult:
    """What one pass removed."""

    statuses_deleted: int
    status_index_pruned: int
    dead_letter_index_pruned: int
    documents_deleted: dict[str, int] = field(default_factory=dict)
    documents_before: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def run(*, statuses: StatusStore, dead_letters: DeadLetterStore, storage: ReportStorage | None,
        rule: CleanupRule | None, report_ttl: int, now: float) -> RetentionResult:
    """One retention pass; ``storage`` None leaves documents alone, ``rule`` None every record."""
    deleted = statuses.apply(rule) if rule is not None else 0
    pruned = statuses.prune(now)
    dlq_pruned = dead_letters.prune(now)
    documents: dict[str, int] = {}
    before = None
    if storage is not None:
        before = now - report_ttl
        documents = storage.expire(before=before)
    return RetentionResult(statuses_deleted=deleted, status_index_pruned=pruned,
                           dead_letter_index_pruned=dlq_pruned, documents_deleted=documents,
                           documents_before=before)
