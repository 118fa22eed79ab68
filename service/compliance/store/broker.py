"""Read-only views of the Celery broker keys (kombu's Redis transport)."""

from __future__ import annotations

import json
from collections import Counter

import redis


def queue_length(client: redis.Redis, *, prefix: str, queue: str,
                 backlog: str | None = None) -> int:
    """Waiting messages: LLEN of the prefixed list (plus kombu's priority sub-lists), and the
    signals waiting in ``backlog`` (a sorted set) for room on it."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(f"{prefix}{queue}")
    if backlog is not None:
        pipe.zcard(backlog)
    for priority in (3, 6, 9):
        pipe.llen(f"{prefix}{queue}\x06\x16{priority}")
    return sum(int(n) for n in pipe.execute())


def in_flight(client: redis.Redis, *, prefix: str) -> Counter[str]:
    """Reserved but unacked messages per queue (routing key), from kombu's ``unacked`` hash."""
    counts: Counter[str] = Counter()
    for raw in client.hvals(f"{prefix}unacked"):
        try:
            _message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        counts[str(routing_key)] += 1
    return counts
