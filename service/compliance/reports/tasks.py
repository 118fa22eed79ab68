"""Celery task of the report workflow: parse, call the workflow, settle a time limit."""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from compliance.observability import metrics
from compliance.worker.app import REPORT_TASK

log = logging.getLogger(__name__)


@shared_task(name=REPORT_TASK, bind=True, ignore_result=True)
def generate_report(self: Task, report_id: str) -> None:
    """Generate one report (prefork pool; the soft time limit settles it as failed)."""
    from compliance.worker.runtime import get_runtime

    started = time.monotonic()
    rt = get_runtime(self.app.settings)
    try:
        outcome = rt.report_workflow.generate(report_id)
    except SoftTimeLimitExceeded:
        # A hard kill skips every failure hook, so the final status is written here.
        limit = self.app.settings.task_soft_time_limit
        rt.report_workflow.fail(report_id, "time_limit", f"report generation exceeded {limit} s")
        outcome = "failed"
    except Exception as exc:
        # Redis or broker hiccup: run again later; the run counter turns a loop into a failure.
        metrics.TASKS.labels(task="generate_report", state="error").inc()
        log.exception("report task crashed; will run again", extra={"report_id": report_id})
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1)),
                         max_retries=None) from exc
    metrics.TASKS.labels(task="generate_report", state=outcome).inc()
    metrics.TASK_DURATION.labels(task="generate_report").observe(time.monotonic() - started)
