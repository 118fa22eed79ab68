"""The report workflow: accept (API side), generate and settle (worker side).

Evidence travels by claim check: the API stores it and the task message carries only the report
id, so broker messages stay small (Redis runs with noeviction, and acks_late keeps a second copy
of every in-flight message in ``unacked``) and the evidence is kept next to the report it backs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from compliance.delivery.models import Envelope
from compliance.delivery.submit import Submitter
from compliance.messaging import REPORT_TASK
from compliance.observability import metrics
from compliance.reports.facade import ComplianceFacade, ReportDocument
from compliance.reports.storage import ReportStorage, StorageError, document_key, evidence_key
from compliance.settings import Settings
from compliance.store.reports import FINAL, ReportRecord, ReportStatus, ReportStore

log = logging.getLogger(__name__)

REPORT_ID_PATTERN = r"^rpt_[0-9a-f]{32}$"
COMPLETED_EVENT = "report.completed"
FAILED_EVENT = "report.failed"
FailureType = Literal["storage", "facade", "time_limit", "poison"]


class ReportOutcome(StrEnum):
    """How one run of the report task ended (the task metric's state)."""

    COMPLETED = "completed"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # settled already, or another task is generating it
    MISSING = "missing"  # no record: expired or never created


def new_report_id() -> str:
    """A report id (also the storage key stem)."""
    return f"rpt_{uuid.uuid4().hex}"


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the limits are measured in)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def status_url(settings: Settings, report_id: str) -> str:
    """Public URL of the report's record."""
    return f"{settings.public_base_url.rstrip('/')}/reports/{report_id}"


def content_url(settings: Settings, report_id: str) -> str:
    """Public URL of the report's document."""
    return f"{status_url(settings, report_id)}/content"


def completed_payload(settings: Settings, record: ReportRecord, summary: dict[str, Any]) -> dict[str, Any]:
    """``report.completed`` data: the summary and links, never the whole report (pure)."""
    return {
        "report_id": record.report_id, "framework": record.framework, "subject": record.subject,
        "status": ReportStatus.COMPLETED.value, "summary": summary,
        "content_url": content_url(settings, record.report_id),
        "status_url": status_url(settings, record.report_id), "metadata": record.metadata,
    }


def failed_payload(
    settings: Settings, record: ReportRecord, *, error_type: FailureType, reason: str,
) -> dict[str, Any]:
    """``report.failed`` data: why, and where to look (pure)."""
    return {
        "report_id": record.report_id, "framework": record.framework, "subject": record.subject,
        "status": ReportStatus.FAILED.value, "error_type": error_type, "reason": reason,
        "status_url": status_url(settings, record.report_id), "metadata": record.metadata,
    }


@dataclass
class Accepted:
    """What the API answers for an accepted report."""

    report_id: str
    webhook_id: str
    correlation_id: str


def accept(
    *, celery: Celery, records: ReportStore, storage: ReportStorage, settings: Settings,
    framework: str, subject: str, evidence: dict[str, Any], webhook_url: str,
    metadata: dict[str, Any], correlation_id: str, webhook_id: str, tenant: str | None = None,
) -> Accepted:
    """Store the evidence, create the ``queued`` record, enqueue generation (undo on refusal).

    Raises StorageError (nothing accepted) or the broker's/Redis's error.
    """
    report_id = new_report_id()
    storage.put(evidence_key(report_id), json.dumps(evidence, separators=(",", ":")).encode())
    now = time.time()
    records.create(ReportRecord(
        report_id=report_id, framework=framework, subject=subject, status=ReportStatus.QUEUED,
        webhook_id=webhook_id, webhook_url=webhook_url, correlation_id=correlation_id or None,
        metadata=metadata, created_at=now, updated_at=now, tenant=tenant,
    ), lease_until=now + settings.broker_visibility_timeout)
    try:
        celery.send_task(REPORT_TASK, args=[report_id], queue=settings.queue_name,
                         argsrepr=f"<report {report_id}>", kwargsrepr="{}",
                         headers={"correlation_id": correlation_id} if correlation_id else None)
    except Exception:
        records.delete(report_id)
        try:
            storage.delete(evidence_key(report_id))
        except StorageError:
            log.warning("could not remove evidence of a refused report", extra={"report_id": report_id})
        raise
    metrics.TASKS.labels(task="generate_report", state="queued").inc()
    return Accepted(report_id=report_id, webhook_id=webhook_id, correlation_id=correlation_id)


def load_document(storage: ReportStorage, report_id: str) -> ReportDocument:
    """The stored document (StorageNotFoundError when absent)."""
    return ReportDocument.model_validate_json(storage.get(document_key(report_id)))


class Workflow:
    """Generates one report and settles it with exactly one final webhook."""

    def __init__(
        self, *, settings: Settings, records: ReportStore, storage: ReportStorage,
        facade: ComplianceFacade, submitter: Submitter,
    ) -> None:
        self._s = settings
        self._records = records
        self._storage = storage
        self._facade = facade
        self._submitter = submitter

    def generate(self, report_id: str, run_id: str | None = None) -> ReportOutcome:
        """Run the report; returns the outcome (completed, failed, duplicate, missing).

        SoftTimeLimitExceeded passes through to the caller, which settles with ``time_limit``.
        Redis and broker errors pass through too: the task retries, bounded by the run count.
        """
        record = self._records.get(report_id)
        if record is None:
            log.warning("report record missing (expired or never created)", extra={"report_id": report_id})
            return ReportOutcome.MISSING
        if record.status in FINAL:
            # Redelivery after the report was settled (acks_late): do not redo or resend.
            log.info("report already settled", extra={"report_id": report_id, "status": record.status})
            return ReportOutcome.DUPLICATE
        limit = self._s.task_time_limit + 60
        if (record.status is ReportStatus.RUNNING and record.started_at is not None
                and run_id is not None and record.run_id not in (None, run_id)
                and time.time() - record.started_at < limit):
            # Another task holds it (one sent again after its lease lapsed): not twice. The same
            # task retried or redelivered by the broker carries the same id and goes on.
            log.info("report is being generated elsewhere", extra={"report_id": report_id})
            return ReportOutcome.DUPLICATE
        runs = self._records.count_run(report_id)
        if runs > self._s.max_redeliveries:
            self.fail(report_id, "poison", f"generation started {runs} times without finishing")
            return ReportOutcome.FAILED
        self._records.lease(report_id, time.time() + limit)
        record = self._records.put(record.model_copy(update={
            "status": ReportStatus.RUNNING, "started_at": time.time(), "run_id": run_id}))
        try:
            evidence = json.loads(self._storage.get(evidence_key(report_id)))
        except StorageError as exc:
            self.fail(report_id, "storage", f"could not read the evidence: {exc}")
            return ReportOutcome.FAILED
        try:
            document = self._facade.evaluate(report_id=report_id, framework=record.framework,
                                             subject=record.subject, evidence=evidence)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # a facade bug or bad evidence fails this report, not the worker
            log.exception("facade failed", extra={"report_id": report_id})
            self.fail(report_id, "facade", f"{type(exc).__name__}: {exc}"[:500])
            return ReportOutcome.FAILED
        try:
            self._storage.put(document_key(report_id), document.model_dump_json().encode())
        except StorageError as exc:
            self.fail(report_id, "storage", f"could not store the report: {exc}")
            return ReportOutcome.FAILED
        summary = document.summary.model_dump(mode="json")
        # Webhook first, record second: a crash in between redoes the report and resends the
        # same webhook id (receivers de-duplicate); the other order could lose the webhook.
        self._submit(record, COMPLETED_EVENT, completed_payload(self._s, record, summary))
        self._records.put(record.model_copy(update={
            "status": ReportStatus.COMPLETED, "summary": summary, "finished_at": time.time()}))
        metrics.REPORTS.labels(outcome="completed").inc()
        log.info("report completed", extra={"report_id": report_id, "score": summary["score"]})
        return ReportOutcome.COMPLETED

    def fail(self, report_id: str, error_type: FailureType, reason: str) -> None:
        """Mark the report failed and send ``report.failed`` (unless it is already settled)."""
        record = self._records.get(report_id)
        if record is None or record.status in FINAL:
            return
        self._submit(record, FAILED_EVENT,
                     failed_payload(self._s, record, error_type=error_type, reason=reason))
        self._records.put(record.model_copy(update={
            "status": ReportStatus.FAILED, "error": reason, "error_type": error_type,
            "finished_at": time.time()}))
        metrics.REPORTS.labels(outcome="failed").inc()
        log.warning("report failed", extra={"report_id": report_id, "error_type": error_type,
                                            "error": reason})

    def _submit(self, record: ReportRecord, event: str, payload: dict[str, Any]) -> None:
        self._submitter.submit(Envelope(
            webhook_id=record.webhook_id, url=record.webhook_url, event=event, payload=payload,
            correlation_id=record.correlation_id, report_id=record.report_id,
            tenant=record.tenant,
        ))
