"""``circuit_breaker_state`` series recorded from a real breaker cycle, as promtool input series.

Each scenario drives the real ``BreakerStore`` (its Lua transitions, on a real Redis) the way a
delivery worker does: ``acquire`` before an attempt; when allowed (or told to probe) send and
``record`` the result, as a probe when acquire said so; when denied, nothing (the delivery is
deferred). Time is a simulated clock handed to the store, so half an hour takes milliseconds and
no test sleeps. Every scrape interval the gauge is sampled exactly as the API computes it:
``STATE_VALUES`` of each ``BreakerStore.all(now)`` entry (0 closed, 1 half-open, 2 open).

Print the series (a throwaway redis-server from tests/support/services.py):

    .venv/bin/python -m tests.chart.breaker_series
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis

from compliance.store.breakers import BreakerStore
from compliance.store.records import STATE_VALUES

SCRAPE_SECONDS = 30  # the chart's ServiceMonitor interval
STEP_SECONDS = 5  # clock resolution of the simulation
# The service's defaults (COMPLIANCE_BREAKER_FAILURE_THRESHOLD, _RESET_TIMEOUT; the probe lease is
# connect + read timeout + 5 s).
THRESHOLD, RESET_TIMEOUT, PROBE_LEASE = 5, 60.0, 20.0
EPOCH = 1_800_000_000.0


@dataclass(frozen=True)
class Scenario:
    """Traffic to one destination and how its receiver behaves."""

    destination: str
    every: int  # seconds between delivery attempts (new webhooks and deferred ones coming back)
    fails_until: float  # attempts before this second fail (5xx), later ones succeed
    traffic_until: float = math.inf  # nothing is sent to the destination from this second on


SCENARIOS = (
    # a receiver down for 30 minutes under steady, sparse traffic (one webhook every 45 s), then back
    Scenario("https://steady.example.com:443", every=45, fails_until=30 * 60),
    # five failures in a row, then nobody sends there again: the breaker is never probed
    Scenario("https://quiet.example.com:443", every=10, fails_until=math.inf, traffic_until=50),
    # a short outage: one failed probe, the next one closes the breaker
    Scenario("https://blip.example.com:443", every=10, fails_until=150),
)


def record(client: redis.Redis, minutes: int, scenarios: tuple[Scenario, ...] = SCENARIOS,
           ) -> dict[str, list[int | None]]:
    """destination -> one gauge sample per scrape (None: no series yet, the breaker did not exist)."""
    store = BreakerStore(client, threshold=THRESHOLD, reset_timeout=RESET_TIMEOUT, probe_lease=PROBE_LEASE)
    samples: dict[str, list[int | None]] = {s.destination: [] for s in scenarios}
    for second in range(0, minutes * 60 + 1, STEP_SECONDS):
        now = EPOCH + second
        for s in scenarios:
            if second % s.every or second >= s.traffic_until:
                continue
            decision, _wait = store.acquire(s.destination, now=now)
            if str(decision) == "deny":
                continue  # deferred: nothing is sent, nothing is recorded
            result = "failure" if second < s.fails_until else "success"
            store.record(s.destination, result, was_probe=str(decision) == "probe", now=now)  # type: ignore[arg-type]
        if second % SCRAPE_SECONDS == 0:
            gauge = {b.destination: STATE_VALUES.get(b.state, 0) for b in store.all(now)}
            for s in scenarios:
                samples[s.destination].append(gauge.get(s.destination))
    return samples


def promtool_values(samples: list[int | None]) -> str:
    """promtool's expanding notation, one value per scrape (``_`` where there was no sample)."""
    return " ".join("_" if v is None else str(v) for v in samples)


def main() -> None:
    from tests.support.services import start_redis

    with tempfile.TemporaryDirectory() as tmp:
        url, handle = start_redis(Path(tmp))
        try:
            client = redis.Redis.from_url(url, decode_responses=True)
            for destination, values in record(client, minutes=40).items():
                print(f"- series: 'circuit_breaker_state{{destination=\"{destination}\"}}'")
                print(f"  values: '{promtool_values(values)}'")
            client.close()
        finally:
            handle.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
