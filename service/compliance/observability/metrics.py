"""Prometheus metrics. Counters live in worker processes (multiprocess-safe); gauges about Redis
state (statuses, DLQ, queue, breakers) are read from Redis at scrape time by RedisStateCollector,
so every replica reports the fleet-wide truth."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)


@functools.cache
def child(metric: Counter | Histogram, *values: str) -> Any:
    """``metric.labels(*values)``, kept: the delivery engine's hot path updates a few metrics per
    delivery, and ``labels`` (validation, a lock, a dict) costs several times the update."""
    return metric.labels(*values)


DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries_total", "Webhooks finished, by final outcome.", ["outcome"]
)
WEBHOOK_ATTEMPTS = Counter(
    "webhook_delivery_attempts_total", "Delivery attempts, by result class.", ["result"]
)
WEBHOOK_RETRIES = Counter("webhook_retries_total", "Retries scheduled after a failed attempt.")
WEBHOOK_DEFERRALS = Counter(
    "webhook_deferrals_total", "Deliveries deferred because a circuit breaker was open."
)
WEBHOOK_PARKED = Counter(
    "webhook_parked_total",
    "Deliveries parked because their destination had its cap of requests in flight.",
)
WEBHOOK_DUPLICATES = Counter(
    "webhook_duplicate_deliveries_skipped_total",
    "Delivery signals dropped: the webhook was settled, not due yet, or held by another worker.",
)
WEBHOOK_RECOVERED = Counter(
    "webhook_leases_recovered_total",
    "Webhooks signalled again after their lease lapsed (a lost signal or a dead worker).",
)
REPORTS_RECOVERED = Counter(
    "report_leases_recovered_total",
    "Report tasks sent again after their lease lapsed (the broker lost the message).",
)
SWEEP_ERRORS = Counter("webhook_sweep_errors_total", "Sweeps that failed (Redis unreachable).")
WEBHOOK_DELIVERY_DURATION = Histogram(
    "webhook_delivery_duration_seconds", "Duration of one delivery attempt.",
    buckets=DELIVERY_BUCKETS,
)
TASKS = Counter("celery_tasks_total", "Celery tasks finished, by task and state.", ["task", "state"])
TASK_DURATION = Histogram(
    "celery_task_duration_seconds", "Duration of Celery tasks.", ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
DLQ_WRITES = Counter("dead_letter_writes_total", "Entries written to the dead-letter queue.", ["error_type"])
REPORTS = Counter("reports_total", "Reports finished, by outcome.", ["outcome"])


class RedisStateCollector(Collector):
    """Gauges computed from Redis at scrape time; a Redis outage yields redis_up 0, not an error."""

    def __init__(self, read_state: Callable[[], dict[str, object]]) -> None:
        self._read_state = read_state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("redis_up", "1 when Redis answered the last scrape.")
        try:
            state = self._read_state()
        except Exception as exc:  # any Redis failure is a data point, not a scrape error
            log.warning("metrics: redis state unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        statuses = GaugeMetricFamily(
            "webhook_status_records", "Webhook status records in Redis, by status.", labels=["status"]
        )
        for status, count in dict(state["statuses"]).items():  # type: ignore[call-overload]
            statuses.add_metric([status], count)
        yield statuses
        yield GaugeMetricFamily("dead_letter_queue_size", "Entries in the dead-letter queue.",
                                value=float(state["dead_letters"]))  # type: ignore[arg-type]
        queue = GaugeMetricFamily("celery_queue_length", "Tasks waiting in a broker queue.",
                                  labels=["queue"])
        for name, length in dict(state["queues"]).items():  # type: ignore[call-overload]
            queue.add_metric([name], length)
        yield queue
        yield GaugeMetricFamily("celery_tasks_in_flight", "Tasks reserved by workers, not acked.",
                                value=float(state["in_flight"]))  # type: ignore[arg-type]
        schedule = dict(state.get("schedule") or {})  # type: ignore[call-overload]
        if schedule:
            yield GaugeMetricFamily(
                "webhooks_scheduled", "Webhooks waiting for a retry or a breaker (due later).",
                value=float(schedule["scheduled"]))
            yield GaugeMetricFamily(
                "webhooks_due", "Scheduled webhooks already due (the sweeper signals them).",
                value=float(schedule["due_now"]))
            yield GaugeMetricFamily(
                "webhooks_leased", "Webhooks signalled or held by a worker (ready or in flight).",
                value=float(schedule["leased"]))
            yield GaugeMetricFamily(
                "webhooks_parked", "Webhooks waiting for a slot of a destination at its cap.",
                value=float(schedule.get("parked", 0)))
        parked = GaugeMetricFamily(
            "webhooks_parked_by_destination",
            "Webhooks waiting for a slot, per destination (the most parked first, at most "
            "metrics_max_breaker_series).", labels=["destination"])
        for destination, count in dict(state.get("parked") or {}).items():  # type: ignore[call-overload]
            parked.add_metric([destination], count)
        yield parked
        breakers = GaugeMetricFamily(
            "circuit_breaker_state",
            "Circuit breaker state per destination that is not closed (1 half-open, 2 open), "
            "at most metrics_max_breaker_series per state; closed ones are only counted.",
            labels=["destination"],
        )
        for destination, value in dict(state["breakers"]).items():  # type: ignore[call-overload]
            breakers.add_metric([destination], value)
        yield breakers
        by_state = GaugeMetricFamily(
            "circuit_breakers", "Circuit breakers known to the fleet, by state.", labels=["state"])
        for name, count in dict(state.get("breaker_counts") or {}).items():  # type: ignore[call-overload]
            by_state.add_metric([name], count)
        yield by_state
        yield GaugeMetricFamily("redis_used_memory_bytes", "Redis used_memory.",
                                value=float(state["redis_memory"]))  # type: ignore[arg-type]


def process_registry() -> CollectorRegistry:
    """The registry to expose: multiprocess aggregate when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def render(registry: CollectorRegistry, extra: Collector | None = None) -> bytes:
    """Prometheus text exposition of ``registry`` plus ``extra``."""
    if extra is None:
        return generate_latest(registry)
    combined = CollectorRegistry()
    combined.register(_Chain(registry, extra))
    return generate_latest(combined)


class _Chain(Collector):
    def __init__(self, registry: CollectorRegistry, extra: Collector) -> None:
        self._registry = registry
        self._extra = extra

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield from self._registry.collect()  # type: ignore[misc]
        yield from self._extra.collect()  # type: ignore[misc]

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered by the API.", ["method", "route", "status"]
)
# The API's wait for replicas before a 202 (COMPLIANCE_REDIS_WAIT_REPLICAS): met or timed out.
REPLICA_WAITS = Counter(
    "redis_replica_wait_total", "Accepted requests whose write the API waited to see replicated, by result.",
    ["result"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration.", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
