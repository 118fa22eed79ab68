"""Component health for ``/health`` and ``/health/ready``: checks register themselves.

Each check has a name, a probe, whether its failure makes ``/health`` unhealthy (critical),
whether the API needs it to accept work (ready), and whether its result may be cached for
``health_cache_seconds`` (slow probes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Probe = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class HealthCheck:
    """One component's probe and what its failure means."""

    name: str
    probe: Probe
    critical: bool = False
    ready: bool = False
    cached: bool = False
    timeout: float = 3.0
    needs_redis: bool = False


def overall(components: dict[str, dict[str, Any]], critical: set[str]) -> str:
    """healthy, degraded (works, but something needs a look) or unhealthy (503)."""
    for name, component in components.items():
        if name in critical and component.get("status") == "down":
            return "unhealthy"
    if any(c.get("status") in ("down", "degraded") for c in components.values()):
        return "degraded"
    return "healthy"


class HealthChecker:
    """Runs the registered probes; caches the slow ones for ``cache_seconds``."""

    def __init__(self, *, cache_seconds: float) -> None:
        self._checks: list[HealthCheck] = []
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def register(self, check: HealthCheck) -> None:
        """Add a component (its name must be new)."""
        if any(c.name == check.name for c in self._checks):
            raise ValueError(f"health check {check.name!r} registered twice")
        self._checks.append(check)

    async def check(self, *, ready_only: bool = False) -> tuple[str, dict[str, dict[str, Any]]]:
        """(overall status, components); ``ready_only`` runs the checks readiness needs."""
        components: dict[str, dict[str, Any]] = {}
        redis_up = True
        for check in self._checks:
            if ready_only and not check.ready:
                continue
            if check.needs_redis and not redis_up:
                components[check.name] = {"status": "unknown", "detail": "redis unreachable"}
                continue
            if check.cached:
                result = await self._cached(check)
            else:
                result = await self._timed(check.probe, timeout=check.timeout)
            components[check.name] = result
            if check.name == "redis":
                redis_up = result["status"] == "up"
        critical = {c.name for c in self._checks if c.critical or (ready_only and c.ready)}
        return overall(components, critical), components

    async def _cached(self, check: HealthCheck) -> dict[str, Any]:
        hit = self._cache.get(check.name)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        lock = self._locks.setdefault(check.name, asyncio.Lock())
        async with lock:
            hit = self._cache.get(check.name)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            result = await self._timed(check.probe, timeout=check.timeout)
            self._cache[check.name] = (time.monotonic() + self._cache_seconds, result)
            return result

    @staticmethod
    async def _timed(probe: Probe, *, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(asyncio.to_thread(probe), timeout=timeout)
        except TimeoutError:
            result = {"status": "down", "error": f"probe timed out after {timeout} s"}
        except Exception as exc:  # a failing probe is a health result, not an error
            result = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        result.setdefault("latency_ms", round((time.monotonic() - started) * 1000, 1))
        return result
