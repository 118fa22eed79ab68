"""Everything a request handler may use, built once per API process in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from compliance.delivery.submit import Submitter
from compliance.redis_client import create_redis
from compliance.settings import Settings
from compliance.store import broker
from compliance.store.breakers import STATE_VALUES, BreakerStore
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.statuses import StatusStore
from compliance.worker.app import ComplianceCelery, create_celery_app
from compliance.worker.runtime import breaker_store


@dataclass
class Services:
    """The API's clients and stores."""

    settings: Settings
    redis: redis.Redis
    celery: ComplianceCelery
    statuses: StatusStore
    dead_letters: DeadLetterStore
    breakers: BreakerStore
    submitter: Submitter
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create the clients; nothing connects until first use."""
        client = create_redis(settings)
        celery = create_celery_app(settings, include_tasks=False)
        statuses = StatusStore(client, settings)
        dead_letters = DeadLetterStore(client, settings)
        return cls(
            settings=settings, redis=client, celery=celery, statuses=statuses,
            dead_letters=dead_letters, breakers=breaker_store(client, settings),
            submitter=Submitter(celery=celery, statuses=statuses, dead_letters=dead_letters,
                                settings=settings),
        )

    def close(self) -> None:
        """Release pooled connections."""
        self.redis.close()
        self.celery.close()

    def queue_lengths(self) -> dict[str, int]:
        """Waiting tasks per queue."""
        prefix = self.settings.broker_key_prefix
        return {
            name: broker.queue_length(self.redis, prefix=prefix, queue=name)
            for name in (self.settings.queue_name, self.settings.delivery_queue_name)
        }

    def redis_state(self) -> dict[str, object]:
        """Fleet-wide state for metrics (read at scrape time)."""
        self.statuses.prune()
        in_flight = broker.in_flight(self.redis, prefix=self.settings.broker_key_prefix)
        memory = self.redis.info("memory")
        return {
            "statuses": self.statuses.counts(),
            "dead_letters": self.dead_letters.size(),
            "queues": self.queue_lengths(),
            "in_flight": sum(in_flight.values()),
            "breakers": {b.destination: STATE_VALUES.get(b.state, 0) for b in self.breakers.all()},
            "redis_memory": int(memory.get("used_memory", 0)),
        }
