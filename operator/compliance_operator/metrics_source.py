"""Read-only views of the broker and the breakers for one WorkerAutoscaler (Redis only).

Counting reuses ``compliance.store.broker`` and ``BreakerStore`` so the operator and the API
agree on what "queued", "in flight" and "open" mean.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis

from compliance.redis_client import RedisTarget, connect
from compliance.settings import Settings
from compliance.store import broker
from compliance.store.breakers import BreakerStore
from compliance.store.schedule import ScheduleStore
from compliance_operator import policy


@dataclass(frozen=True)
class Snapshot:
    """Everything one poll reads from Redis."""

    queue_length: int
    in_flight: int
    open_breakers: int
    known_breakers: int
    open_backlog_share: float | None
    # Webhooks waiting in the schedule (retries), those already due, and those parked with their
    # destination (an open breaker, or the destination's cap).
    scheduled: int = 0
    scheduled_due: int = 0
    parked: int = 0


class RedisClients:
    """One small client per Redis target (a URL, or sentinels and a master name), shared by every
    autoscaler that names it. A client behind Sentinel follows a failover by itself."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._clients: dict[RedisTarget, redis.Redis] = {}
        self._lock = threading.Lock()

    def get(self, target: RedisTarget) -> redis.Redis:
        """The client for ``target`` (created on first use; nothing connects until a call)."""
        with self._lock:
            client = self._clients.get(target)
            if client is None:
                client = connect(target, max_connections=8, timeout=self._timeout, retry=None,
                                 blocking=False, health_check_interval=0)
                self._clients[target] = client
            return client

    def close(self) -> None:
        """Release every pool."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


# The queue webhook deliveries are signalled on (the service's default, which the chart keeps).
DELIVERY_QUEUE = str(Settings.model_fields["delivery_queue_name"].default)


def read_snapshot(
    client: redis.Redis, *, prefix: str, queue: str, sample_backlog: bool,
    reset_timeout: float, active_window: float, now: float | None = None,
) -> Snapshot:
    """Queue length, unacked count for ``queue``, breaker counts and the open-backlog share
    (exact: webhooks parked with open destinations against everything waiting)."""
    now = time.time() if now is None else now
    queued = broker.queue_length(client, prefix=prefix, queue=queue)
    in_flight = broker.in_flight(client, prefix=prefix)[queue]
    scheduled = scheduled_due = 0
    if queue == DELIVERY_QUEUE:
        # The delivery engine's work is leased in the schedule, not unacked in kombu: leased
        # webhooks are the queued signals plus those a worker holds.
        counts = ScheduleStore(client, queue_key=f"{prefix}{queue}").counts(now)
        in_flight = max(in_flight, counts.leased - queued)
        # Signals waiting in the fair backlog for room on the short list are demand too.
        queued += counts.backlogged
        scheduled, scheduled_due = counts.scheduled, counts.due_now
    breakers = BreakerStore(client, threshold=1, reset_timeout=reset_timeout, probe_lease=1.0)
    states = breakers.all(now)
    open_count, known, open_names = policy.breaker_counts(states, now=now, active_window=active_window)
    parked = breakers.parked() if queue == DELIVERY_QUEUE else {}
    share = None
    if sample_backlog and open_names:
        share = policy.backlog_share(parked, open_names, ready=queued)
    return Snapshot(queue_length=queued, in_flight=in_flight, open_breakers=open_count,
                    known_breakers=known, open_backlog_share=share, scheduled=scheduled,
                    scheduled_due=scheduled_due, parked=sum(parked.values()))


def held_tasks_by_pod(target: RedisTarget, *, prefix: str, timeout: float) -> dict[str, int] | None:
    """Tasks each worker holds (active + reserved + scheduled, and its engine's deliveries),
    keyed by pod name.

    Asked over the broker with Celery's remote control (``inspect``), the same channel as
    ``celery inspect active``. Workers are named ``<kind>@<hostname>`` and a pod's hostname is
    its name. None when no worker answered (then nothing is annotated).
    """
    from celery import Celery

    app = Celery("compliance-operator", broker=target.broker_url(), set_as_current=False)
    if target.uses_sentinel:
        app.conf.broker_transport = "compliance.broker_transport:SentinelTransport"
    app.conf.broker_transport_options = {
        "global_keyprefix": prefix, **target.broker_transport_options(timeout=timeout)}
    app.conf.broker_connection_retry_on_startup = False
    try:
        inspect = app.control.inspect(timeout=timeout)
        replies = [inspect.active(), inspect.reserved(), inspect.scheduled()]
        # The delivery engine's deliveries are not pool tasks: each worker says how many.
        engine = app.control.broadcast("engine_in_flight", reply=True, timeout=timeout)
    except Exception:  # the broker is unreachable: no annotation, scaling proceeds
        return None
    finally:
        app.close()
    return policy.held_from_replies(replies, engine or [])
