"""Celery task of the report workflow: parse, call the workflow, settle a time limit."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded

from compliance.messaging import REPORT_TASK
from compliance.observability import metrics
from compliance.reports.workflow import ReportOutcome
from compliance.wiring import Container, process_container

log = logging.getLogger(__name__)


@shared_task(name=REPORT_TASK, bind=True, ignore_result=True)
def generate_report(self: Task, report_id: str) -> None:
    """Generate one report (prefork pool; the soft time limit settles it as failed)."""
    started = time.monotonic()
    try:
        outcome = _generate(self, process_container(self.app.settings), report_id)
    except Retry:  # _generate scheduled a run after a pause
        metrics.TASKS.labels(task="generate_report", state="error").inc()
        raise
    except Exception as exc:
        # Under acks_late Celery rejects a failed task's message *without* requeue (kombu's
        # Redis transport then deletes it), and Task.retry does the same when it cannot
        # publish. Hand the message back instead; the workflow's run counter turns a message
        # that keeps failing into a `poison` failure with report.failed.
        metrics.TASKS.labels(task="generate_report", state="error").inc()
        log.exception("report task failed; message requeued", extra={"report_id": report_id})
        raise Reject(exc, requeue=True) from exc
    metrics.TASKS.labels(task="generate_report", state=outcome).inc()
    metrics.TASK_DURATION.labels(task="generate_report").observe(time.monotonic() - started)


def _generate(task: Task, rt: Container, report_id: str) -> ReportOutcome:
    try:
        return rt.report_workflow.generate(report_id, run_id=task.request.id)
    except SoftTimeLimitExceeded:
        # A hard kill skips every failure hook, so the final status is written here.
        limit = rt.settings.task_soft_time_limit
        rt.report_workflow.fail(report_id, "time_limit", f"report generation exceeded {limit} s")
        return ReportOutcome.FAILED
    except Exception as exc:
        # Redis or broker hiccup: run again after a pause (Retry); if even that cannot be
        # published, Celery raises Reject(requeue=False), which the caller turns into a requeue.
        log.exception("report task crashed; will run again", extra={"report_id": report_id})
        raise task.retry(exc=exc, countdown=min(60, 2 ** (task.request.retries + 1)),
                         max_retries=None) from exc
