"""Producer side: create the pending record, enqueue the first attempt, replay dead letters."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from celery import Celery

from compliance.delivery.models import Envelope
from compliance.delivery.tasks import enqueue
from compliance.settings import Settings
from compliance.store.dead_letters import DeadLetterFilter, DeadLetterStore
from compliance.store.records import DeadLetter, Status, WebhookStatus
from compliance.store.statuses import StatusStore


def new_webhook_id() -> str:
    """A stable id receivers use to de-duplicate (``webhook-id`` header)."""
    return f"wh_{uuid.uuid4().hex}"


class Submitter:
    """Puts webhooks on the delivery queue with their status record."""

    def __init__(
        self, *, celery: Celery, statuses: StatusStore, dead_letters: DeadLetterStore,
        settings: Settings,
    ) -> None:
        self._celery = celery
        self._statuses = statuses
        self._dlq = dead_letters
        self._settings = settings

    def submit(self, env: Envelope) -> None:
        """Record ``pending`` then enqueue; the record is removed again if the broker refuses."""
        now = time.time()
        self._statuses.put(WebhookStatus(
            webhook_id=env.webhook_id, report_id=env.report_id, destination=env.url,
            event=env.event, status=Status.PENDING, attempts=env.attempts,
            created_at=env.created_at, updated_at=now, correlation_id=env.correlation_id,
        ))
        try:
            enqueue(self._celery, env, queue=self._settings.delivery_queue_name)
        except Exception:
            self._statuses.delete(env.webhook_id)
            raise

    def replay(self, webhook_id: str) -> str:
        """Re-enqueue one dead letter with the same id and a fresh attempt budget.

        Returns ``replayed``, ``missing`` or ``busy`` (another replay holds it right now).
        """
        entry = self._dlq.claim(webhook_id)
        if entry is None:
            return "busy" if self._dlq.get(webhook_id) is not None else "missing"
        try:
            self.submit(envelope_from_dead_letter(entry))
        except Exception:
            self._dlq.release(webhook_id)
            raise
        self._dlq.remove(webhook_id, replay_count=entry.replay_count)
        return "replayed"

    def replay_many(
        self, selector: DeadLetterFilter, *, limit: int, dry_run: bool,
        rate_per_second: float | None = None, on_progress: Callable[[str], None] | None = None,
    ) -> ReplayCounts:
        """Replay up to ``limit`` selected entries (or only count them when ``dry_run``)."""
        counts = ReplayCounts()
        interval = 1.0 / rate_per_second if rate_per_second else 0.0
        # Select first, then replay: replaying removes entries and would shift a live iteration.
        selected = list(_take(self._dlq.iter(selector), limit))
        for entry in selected:
            counts.matched += 1
            if dry_run:
                continue
            try:
                outcome = self.replay(entry.webhook_id)
            except Exception as exc:  # one broken entry must not stop a bulk replay
                counts.failed += 1
                counts.errors.append(f"{entry.webhook_id}: {exc}")
                outcome = "failed"
            else:
                if outcome == "replayed":
                    counts.replayed += 1
                else:
                    counts.skipped += 1
            if on_progress:
                on_progress(outcome)
            if interval:
                time.sleep(interval)
        return counts


@dataclass
class ReplayCounts:
    """What a bulk replay did."""

    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def envelope_from_dead_letter(entry: DeadLetter) -> Envelope:
    """Same webhook id and payload; attempts, history and deferral start over."""
    return Envelope(
        webhook_id=entry.webhook_id, url=entry.destination, event=entry.event,
        payload=entry.payload, correlation_id=entry.correlation_id, report_id=entry.report_id,
        created_at=entry.created_at, replay_count=entry.replay_count + 1,
    )


def _take(items: Iterator[DeadLetter], limit: int) -> Iterator[DeadLetter]:
    for index, item in enumerate(items):
        if index >= limit:
            return
        yield item
