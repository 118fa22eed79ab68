"""What the console shows, read from the same stores the JSON routes use (blocking: call these
off the event loop)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from compliance.store import broker
from compliance.store.records import EVERYONE, Attempt, DeadLetter, Scope, WebhookStatus
from compliance.wiring import Container

CHART_WINDOW = 3600.0  # the overview's chart: the last hour (or the delivered TTL, if shorter) ...
CHART_BUCKETS = 60  # ... in this many points
# The overview counts dead letters by error type over the newest this many entries: it is read
# on every refresh, and each entry is a read and a parse.
DLQ_TYPE_SAMPLE = 1000


@dataclass(frozen=True)
class Chart:
    """An SVG polyline chart (points in a 0..width x 0..height box, y down) and its scale."""

    width: int
    height: int
    rate_points: str
    success_points: str
    success_dots: list[tuple[float, float]]  # a point may stand alone: drawn as dots too
    peak_rate: float
    buckets: int
    window: float  # seconds the chart spans


@dataclass
class Overview:
    """The numbers of the overview page."""

    rate_now: float  # deliveries (delivered + failed) per second over the last 5 minutes
    success_now: float | None  # delivered / (delivered + failed) over the last 5 minutes
    chart: Chart
    ready: dict[str, int]
    scheduled: int
    due_now: int
    leased: int
    broker_unacked: int
    parked: int  # waiting with their destination (an open breaker, or its cap)
    dead_letters: int
    dead_letters_by_type: dict[str, int]
    dead_letters_exact: bool
    breakers: dict[str, int]
    workers: int | None
    redis_used: int
    redis_max: int
    at: float = field(default_factory=time.time)

    @property
    def redis_percent(self) -> float | None:
        """Used memory against ``maxmemory`` (None when Redis has no limit)."""
        return 100.0 * self.redis_used / self.redis_max if self.redis_max else None


def chart(outcomes: list[tuple[int, int]], *, bucket_seconds: float, window: float = CHART_WINDOW,
          width: int = 900, height: int = 160) -> Chart:
    """Deliveries per second (scaled to the peak) and success rate (0..100 %) as polylines."""
    rates = [(d + f) / bucket_seconds for d, f in outcomes]
    peak = max(rates, default=0.0)
    step = width / max(1, len(outcomes) - 1)

    def y(fraction: float) -> float:
        return round(height - fraction * height, 1)

    rate_points = " ".join(f"{round(i * step, 1)},{y(r / peak if peak else 0.0)}"
                           for i, r in enumerate(rates))
    dots = [(round(i * step, 1), y(d / (d + f))) for i, (d, f) in enumerate(outcomes) if d + f]
    success_points = " ".join(f"{x},{y_}" for x, y_ in dots)
    return Chart(width=width, height=height, rate_points=rate_points,
                 success_points=success_points, success_dots=dots, peak_rate=peak,
                 buckets=len(outcomes), window=window)


def overview(container: Container, *, workers: int | None) -> Overview:
    """Throughput, queues, DLQ, breakers and Redis memory, read now."""
    s = container.settings
    now = container.clock()
    container.statuses.prune(now)
    # Delivered records are indexed only while they live: the chart spans no more than that.
    window = min(CHART_WINDOW, float(s.status_ttl_delivered))
    outcomes = container.statuses.outcomes(now=now, window=window, buckets=CHART_BUCKETS)
    recent_seconds = min(300.0, window)
    recent = outcomes[-max(1, round(CHART_BUCKETS * recent_seconds / window)):]
    delivered = sum(d for d, _ in recent)
    finished = sum(d + f for d, f in recent)
    schedule = container.schedule.counts(now)
    by_type, exact = container.dead_letters.counts_by_error_type(DLQ_TYPE_SAMPLE)
    memory = container.redis.info("memory")
    return Overview(
        rate_now=finished / (len(recent) * window / CHART_BUCKETS),
        success_now=delivered / finished if finished else None,
        chart=chart(outcomes, bucket_seconds=window / CHART_BUCKETS, window=window),
        ready=container.queue_lengths(), scheduled=schedule.scheduled, due_now=schedule.due_now,
        leased=schedule.leased, parked=sum(container.breakers.parked().values()),
        broker_unacked=sum(broker.in_flight(container.redis, prefix=s.broker_key_prefix).values()),
        dead_letters=container.dead_letters.size(), dead_letters_by_type=by_type,
        dead_letters_exact=exact, breakers=container.breakers.counts(now), workers=workers,
        redis_used=int(memory.get("used_memory", 0)), redis_max=int(memory.get("maxmemory", 0)),
        at=now)


@dataclass
class WebhookView:
    """A webhook's status with its attempts, and its dead letter when it has one."""

    status: WebhookStatus | None
    attempts: list[Attempt]
    dead_letter: DeadLetter | None


def webhook(container: Container, webhook_id: str, scope: Scope = EVERYONE) -> WebhookView:
    """The status record with its attempts; the dead letter's when the record has expired
    (neither when they are not ``scope``'s)."""
    status = container.statuses.get(webhook_id)
    entry = container.dead_letters.get(webhook_id)
    if status is not None and not scope.allows(status.tenant):
        status = None
    if entry is not None and not scope.allows(entry.tenant):
        entry = None
    kept = status.history if status is not None else entry.attempts if entry else None
    attempts = kept or []
    return WebhookView(status, attempts, entry)


def workers_from_health(components: dict[str, dict[str, Any]]) -> int | None:
    """Workers that answered the health check's ping (None when it did not run)."""
    celery = components.get("celery", {})
    workers = celery.get("workers")
    return len(workers) if isinstance(workers, list) else None
