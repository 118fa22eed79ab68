"""Per-process objects of a worker (Redis pool, stores, sender), built after the fork."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from compliance.delivery.sender import Sender
from compliance.delivery.service import Deliverer
from compliance.delivery.submit import Submitter
from compliance.redis_client import create_redis
from compliance.settings import Settings
from compliance.store.breakers import BreakerStore
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.reports import ReportStore
from compliance.store.statuses import StatusStore

if TYPE_CHECKING:
    from compliance.reports.service import Workflow as ReportWorkflow


@dataclass
class Runtime:
    """Lazily built clients for one worker process."""

    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        """Pooled Redis client."""
        return create_redis(self.settings)

    @cached_property
    def statuses(self) -> StatusStore:
        """Status store."""
        return StatusStore(self.redis, self.settings)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        """Dead-letter store."""
        return DeadLetterStore(self.redis, self.settings)

    @cached_property
    def breakers(self) -> BreakerStore:
        """Breaker store."""
        return breaker_store(self.redis, self.settings)

    @cached_property
    def deliverer(self) -> Deliverer:
        """The delivery engine."""
        sender = Sender(
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            body_cap=self.settings.response_body_cap,
            max_connections=self.settings.delivery_concurrency,
        )
        return Deliverer(settings=self.settings, statuses=self.statuses,
                         dead_letters=self.dead_letters, breakers=self.breakers, sender=sender)

    @cached_property
    def submitter(self) -> Submitter:
        """Enqueues webhooks from inside a task, through a producer app of this process."""
        from compliance.worker.app import create_celery_app

        producer = create_celery_app(self.settings, include_tasks=False)
        return Submitter(celery=producer, statuses=self.statuses,
                         dead_letters=self.dead_letters, settings=self.settings)

    @cached_property
    def reports(self) -> ReportStore:
        """Report records."""
        return report_store(self.redis, self.settings)

    @cached_property
    def report_workflow(self) -> ReportWorkflow:
        """The report workflow with this process's facade and storage."""
        from compliance.reports.facade import load_facade
        from compliance.reports.service import Workflow
        from compliance.reports.storage import build_storage

        return Workflow(settings=self.settings, records=self.reports,
                        storage=build_storage(self.settings), facade=load_facade(self.settings),
                        submitter=self.submitter)


def report_store(client: redis.Redis, settings: Settings) -> ReportStore:
    """The report store as configured (one place for its TTLs)."""
    return ReportStore(client, ttl=settings.report_ttl,
                       runs_ttl=settings.broker_visibility_timeout * (settings.max_redeliveries + 1))


def breaker_store(client: redis.Redis, settings: Settings) -> BreakerStore:
    """The breaker store as configured (one place for its parameters)."""
    return BreakerStore(
        client,
        threshold=settings.breaker_failure_threshold,
        reset_timeout=settings.breaker_reset_timeout,
        probe_lease=settings.connect_timeout + settings.read_timeout + 5,
    )


_runtime: Runtime | None = None


def get_runtime(settings: Settings) -> Runtime:
    """This process's runtime (rebuilt after fork by ``reset``)."""
    global _runtime  # noqa: PLW0603 - one runtime per process by design
    if _runtime is None or _runtime.settings is not settings:
        _runtime = Runtime(settings)
    return _runtime


def reset() -> None:
    """Forget clients inherited from a parent process."""
    global _runtime  # noqa: PLW0603
    _runtime = None
