"""Waiting until replicas hold what the API just accepted (Redis ``WAIT``).

``WAIT n ms`` waits for the writes of *the connection it runs on*, while an accepted webhook was
written on other pooled connections (and its queue message on kombu's). The replication offset
is one sequence for the whole primary, though: a write on this connection, made after those
writes returned, has a higher offset than every one of them. So a one-key write (the fence)
followed by ``WAIT`` on the same connection covers everything the request wrote before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from compliance.store import keys


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas acknowledged, of how many asked for."""

    acknowledged: int
    wanted: int

    @property
    def met(self) -> bool:
        """Did enough replicas acknowledge within the timeout?"""
        return self.acknowledged >= self.wanted


def wait_for_replicas(client: redis.Redis, *, replicas: int, timeout_ms: int) -> ReplicaWait:
    """Block until ``replicas`` replicas hold every write made before this call, or the timeout."""
    pipe = client.pipeline(transaction=False)  # one connection for the fence and the WAIT
    pipe.set(keys.REPLICATION_FENCE, "1", px=60_000)
    pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
    _, acknowledged = pipe.execute()
    return ReplicaWait(acknowledged=int(acknowledged), wanted=replicas)


async def wait_for_replicas_async(aclient: Any, *, replicas: int, timeout_ms: int) -> ReplicaWait:
    """``wait_for_replicas`` on an asyncio client (the fence and the WAIT on one connection)."""
    pipe = aclient.pipeline(transaction=False)
    pipe.set(keys.REPLICATION_FENCE, "1", px=60_000)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    _, acknowledged = await pipe.execute()
    return ReplicaWait(acknowledged=int(acknowledged), wanted=replicas)
