"""Queue signals: a message on the delivery queue that says "webhook X is due", nothing more."""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery

from compliance.messaging import DELIVER_TASK, REPORT_TASK


class Dispatcher:
    """Publishes delivery signals on the delivery queue (Celery tasks, so the seed's
    ``celery inspect`` and ``purge`` keep working)."""

    def __init__(self, celery: Celery, *, queue: str) -> None:
        self._celery = celery
        self._queue = queue

    def signal(self, webhook_ids: Iterable[str]) -> int:
        """One message per id, over one pooled connection; returns how many were sent."""
        sent = 0
        with self._celery.producer_or_acquire() as producer:
            for webhook_id in webhook_ids:
                self._celery.send_task(
                    DELIVER_TASK, args=[webhook_id], queue=self._queue, producer=producer,
                    argsrepr=f"<webhook {webhook_id}>", kwargsrepr="{}",
                    # Read by the asyncio engine's take script (Lua has no base64 for the body).
                    headers={"webhook_id": webhook_id})
                sent += 1
        return sent

    def resend_reports(self, report_ids: Iterable[str], *, queue: str) -> int:
        """Send report tasks again (their first message was lost); returns how many."""
        sent = 0
        with self._celery.producer_or_acquire() as producer:
            for report_id in report_ids:
                self._celery.send_task(REPORT_TASK, args=[report_id], queue=queue,
                                       producer=producer, argsrepr=f"<report {report_id}>",
                                       kwargsrepr="{}")
                sent += 1
        return sent
