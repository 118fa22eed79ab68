"""Fleet-wide readings from Redis for ``/metrics`` and ``/health`` (read at request time)."""

from __future__ import annotations

from typing import Any

from compliance.store import broker
from compliance.store.breakers import STATE_VALUES
from compliance.wiring import Container


def redis_state(container: Container) -> dict[str, object]:
    """Statuses, DLQ size, queue signals (ready, scheduled, leased), breakers, Redis memory."""
    s = container.settings
    container.statuses.prune()
    in_flight = broker.in_flight(container.redis, prefix=s.broker_key_prefix)
    schedule = container.schedule.counts(container.clock())
    memory = container.redis.info("memory")
    parked = container.breakers.parked()
    return {
        "statuses": container.statuses.counts(),
        "dead_letters": container.dead_letters.size(),
        "queues": container.queue_lengths(),
        "in_flight": sum(in_flight.values()),
        "schedule": {"scheduled": schedule.scheduled, "due_now": schedule.due_now,
                     "leased": schedule.leased, "parked": sum(parked.values())},
        "parked": dict(sorted(parked.items(), key=lambda kv: -kv[1])[
            :s.metrics_max_breaker_series]),
        "breakers": breaker_series(container),
        "breaker_counts": container.breakers.counts(),
        "redis_memory": int(memory.get("used_memory", 0)),
    }


def redis_probe(container: Container) -> dict[str, Any]:
    """Redis answers a PING."""
    container.redis.ping()
    return {"status": "up"}


def celery_probe(container: Container) -> dict[str, Any]:
    """Workers answer a broadcast ping."""
    replies = container.celery.control.ping(timeout=container.settings.health_celery_timeout)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return {"status": "degraded", "workers": [], "detail": "no worker answered the ping"}
    return {"status": "up", "workers": workers}


def breaker_series(container: Container) -> dict[str, int]:
    """State values of breakers that are not closed, newest opened first, at most
    ``metrics_max_breaker_series`` of each state: bounded however many destinations exist."""
    cap = container.settings.metrics_max_breaker_series
    series: dict[str, int] = {}
    if cap:
        for state in ("open", "half_open"):
            items, _ = container.breakers.page(offset=0, limit=cap, state=state)
            series.update({b.destination: STATE_VALUES.get(b.state, 0) for b in items})
    return series


def breakers_probe(container: Container) -> dict[str, Any]:
    """Breakers by state (degraded while any is open); names are in GET /circuit-breakers."""
    counts = container.breakers.counts()
    return {"status": "degraded" if counts["open"] else "up", **counts}


def queue_probe(container: Container) -> dict[str, Any]:
    """Queue signals apart: ready (lists), scheduled (due later, and due now), leased, and
    parked (waiting for a slot of a destination at its cap)."""
    schedule = container.schedule.counts(container.clock())
    return {"status": "up", "ready": container.queue_lengths(), "scheduled": schedule.scheduled,
            "due_now": schedule.due_now, "leased": schedule.leased,
            "parked": sum(container.breakers.parked().values())}
