"""Component health for ``/health``: Redis every time, slow probes cached for a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from compliance.api.services import Services

Probe = Callable[[], dict[str, Any]]
# Components whose failure makes the API unable to serve: /health answers 503.
CRITICAL = frozenset({"redis", "storage", "facade"})


def overall(components: dict[str, dict[str, Any]]) -> str:
    """healthy, degraded (works, but something needs a look) or unhealthy (503)."""
    for name, component in components.items():
        if name in CRITICAL and component.get("status") == "down":
            return "unhealthy"
    if any(c.get("status") in ("down", "degraded") for c in components.values()):
        return "degraded"
    return "healthy"


class HealthChecker:
    """Runs the probes; caches the slow ones for ``settings.health_cache_seconds``."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """(overall status, components)."""
        redis_status = await self._timed(self._redis, timeout=3.0)
        components: dict[str, dict[str, Any]] = {"redis": redis_status}
        redis_up = redis_status["status"] == "up"
        if redis_up:
            components["celery"] = await self._cached("celery", self._celery, timeout=5.0)
            components["circuit_breakers"] = await self._timed(self._breakers, timeout=3.0)
        else:
            components["celery"] = {"status": "unknown", "detail": "broker unreachable"}
            components["circuit_breakers"] = {"status": "unknown", "detail": "redis unreachable"}
        for name in ("facade", "storage"):
            probe = self._services.extras.get(f"{name}_probe")
            if probe is None:
                components[name] = {"status": "not_configured"}
            else:
                components[name] = await self._cached(name, probe, timeout=10.0)  # type: ignore[arg-type]
        return overall(components), components

    async def _cached(self, name: str, probe: Probe, *, timeout: float) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit and hit[0] > now:
            return hit[1]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            hit = self._cache.get(name)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            result = await self._timed(probe, timeout=timeout)
            self._cache[name] = (time.monotonic() + self._services.settings.health_cache_seconds,
                                 result)
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

    def _redis(self) -> dict[str, Any]:
        self._services.redis.ping()
        return {"status": "up"}

    def _celery(self) -> dict[str, Any]:
        replies = self._services.celery.control.ping(
            timeout=self._services.settings.health_celery_timeout)
        workers = sorted(name for reply in replies for name in reply)
        if not workers:
            return {"status": "degraded", "workers": [], "detail": "no worker answered the ping"}
        return {"status": "up", "workers": workers}

    def _breakers(self) -> dict[str, Any]:
        breakers = self._services.breakers.all()
        open_ = [b.destination for b in breakers if b.state == "open"]
        half = [b.destination for b in breakers if b.state == "half_open"]
        return {"status": "degraded" if open_ else "up", "total": len(breakers),
                "open": open_, "half_open": half}


