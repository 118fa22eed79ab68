"""Worker liveness for the chart's exec probe (``compliance worker-alive``).

A thread checks that each part of the worker still turns: Celery's consumer loop (a timer on
it), the delivery engine's loop and the sweeper's. While they all do, it touches a heartbeat
file; the probe fails once the file is older than the liveness window, and Kubernetes restarts
the container. A consumer stalled because Redis is unreachable is waiting, not stuck: the worker
rides out an outage by itself (``compliance.broker_transport``), so that does not count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
# A part's clock: the monotonic time it last went round its loop.
Clock = Callable[[], float]


def stale_parts(ticks: dict[str, float], *, now: float, window: float,
                redis_up: bool) -> list[str]:
    """The parts that have not turned within ``window`` seconds (pure; unit-tested)."""
    stale = [name for name, at in ticks.items() if now - at > window]
    if not redis_up:
        stale = [name for name in stale if name != "consumer"]
    return sorted(stale)


class Heartbeat:
    """Touches ``path`` while every registered part turns."""

    def __init__(self, path: Path, *, window: float, redis_up: Callable[[], bool]) -> None:
        self._path = path
        self._window = window
        self._redis_up = redis_up
        self._parts: dict[str, Clock] = {}
        self._ticks: dict[str, float] = {}

    def watch(self, name: str, clock: Clock) -> None:
        """Watch a part whose ``clock()`` returns when it last turned."""
        self._parts[name] = clock

    def beat(self, name: str) -> None:
        """Record that ``name`` turned now (for parts that report instead of being read)."""
        self._ticks[name] = time.monotonic()
        self._parts.setdefault(name, lambda name=name: self._ticks[name])  # type: ignore[misc]

    def check(self) -> list[str]:
        """Stale parts right now (empty: alive)."""
        ticks = {name: clock() for name, clock in self._parts.items()}
        now = time.monotonic()
        if not stale_parts(ticks, now=now, window=self._window, redis_up=True):
            return []
        return stale_parts(ticks, now=now, window=self._window, redis_up=self._redis_up())

    def run(self, stop: threading.Event, interval: float = 5.0) -> None:
        """Touch the file while alive; say once what stopped turning."""
        reported = False
        while not stop.is_set():
            try:
                stale = self.check()
            except Exception as exc:  # a check that fails must not look alive
                stale = [f"check failed: {type(exc).__name__}"]
            if not stale:
                self._path.write_text(f"{time.time():.0f}\n")
                reported = False
            elif not reported:
                log.error("worker part stopped turning; liveness will fail", extra={"parts": stale})
                reported = True
            stop.wait(interval)

    def start(self) -> threading.Event:
        """Run in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.run, args=(stop,), name="liveness", daemon=True).start()
        return stop


def file_is_fresh(path: Path, *, max_age: float, now: float | None = None) -> bool:
    """What the probe asks: was the heartbeat written within ``max_age`` seconds?"""
    try:
        written = path.stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - written <= max_age
