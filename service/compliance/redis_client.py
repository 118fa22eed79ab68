"""Builds the pooled Redis client shared by everything in one process."""

from __future__ import annotations

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from compliance.settings import Settings


def create_redis(settings: Settings) -> redis.Redis:
    """A pooled client sized for the process's concurrency; answers are decoded to str."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_socket_timeout,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
        decode_responses=True,
        health_check_interval=30,
        # One quick retry; a Redis outage must surface fast (503 on /health), not hang requests.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
    )
    return redis.Redis(connection_pool=pool)


def check_eviction_policy(client: redis.Redis) -> str | None:
    """Return a warning when Redis may evict our keys (anything but noeviction)."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:  # CONFIG disabled on managed Redis: cannot tell
        return None
    if policy and policy != "noeviction":
        return (
            f"Redis maxmemory-policy is {policy!r}: it may evict queued tasks, statuses and "
            "dead letters; set it to noeviction"
        )
    return None


def create_async_redis(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio client for the delivery engine's event loop (one loop, a small pool)."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        max_connections=32,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
        decode_responses=True,
        health_check_interval=30,
    )
