"""Breaker transitions are atomic across processes (real Redis, real OS processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import redis

from compliance.store.breakers import BreakerDecision, BreakerResult, BreakerStore
from tests.support.services import wait_until

DEST = "https://flaky.example.com:443"

# Each contender is a fresh interpreter (not a fork of this threaded pytest process, which can
# inherit a held lock and hang). They all connect, report ready, then block on one Redis list until
# the test releases them together, so the calls really race.
_CONTENDER = """
import json, sys
import redis
from compliance.store.breakers import BreakerStore
url, action, n, reset_timeout, dest = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
client = redis.Redis.from_url(url, decode_responses=True)
store = BreakerStore(client, threshold=5, reset_timeout=reset_timeout, probe_lease=10)
client.incr("test:ready")
client.blpop(["test:go"], timeout=60)
if action == "fail":
    out = [store.record(dest, "failure", was_probe=False) for _ in range(n)]
else:
    out = [store.acquire(dest)[0] for _ in range(n)]
print(json.dumps(out))
"""


def _race(url: str, r: redis.Redis, action: str, n: int, reset_timeout: float, procs: int) -> list[list[str]]:
    r.delete("test:ready", "test:go")
    running = [subprocess.Popen([sys.executable, "-c", _CONTENDER, url, action, str(n), str(reset_timeout), DEST],
                                stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    try:
        deadline = time.time() + 60
        while int(r.get("test:ready") or 0) < procs:
            assert time.time() < deadline, "contenders never became ready"
            assert all(p.poll() is None for p in running), "a contender died before the race"
            time.sleep(0.02)
        r.rpush("test:go", *["go"] * procs)
        outputs = [p.communicate(timeout=60)[0] for p in running]
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in running), outputs
    return [json.loads(line) for line in outputs]


def test_opens_exactly_once_at_the_fifth_failure_across_processes(redis_url, r):
    results = _race(redis_url, r, "fail", n=3, reset_timeout=30, procs=4)  # 12 failures
    flat = [state for batch in results for state in batch]
    assert flat.count("closed") == 4  # failures 1..4 leave it closed, whichever process sent them
    state = r.hgetall(f"compliance:breaker:{DEST}")
    assert state["state"] == "open"
    assert state["failures"] == "5"  # counting stopped at the opening transition
    assert state["times_opened"] == "1"


def test_half_open_lets_exactly_one_probe_through_the_fleet(redis_url, r):
    store = BreakerStore(redis.Redis.from_url(redis_url, decode_responses=True), threshold=5,
                         reset_timeout=0.2, probe_lease=10)

    def reset_timeout_passed() -> bool:
        # Waiting out the reset timeout is the behaviour under test, so the wait is on the clock,
        # but against the opening the breaker recorded (opened_at), not a guessed sleep. It only
        # reads the state: asking the breaker (acquire) after the timeout would take the probe.
        opened_at = store.get(DEST).opened_at
        return opened_at is not None and time.time() >= opened_at + store.reset_timeout

    for _ in range(5):
        store.record(DEST, "failure", was_probe=False)
    assert store.acquire(DEST, now=store.get(DEST).opened_at)[0] == "deny"  # a deny changes nothing
    wait_until(reset_timeout_passed, timeout=5, interval=0.01, message="the breaker never opened")
    decisions = [d for batch in _race(redis_url, r, "acquire", n=1, reset_timeout=0.2, procs=8) for d in batch]
    assert sorted(decisions) == ["deny"] * 7 + ["probe"]
    # the probe's failure re-opens it (for a new reset timeout); a success would have closed it
    probe_failed_at = time.time()
    assert store.record(DEST, "failure", was_probe=True) == "open"
    reopened_at = store.get(DEST).opened_at
    assert reopened_at is not None and reopened_at >= probe_failed_at  # the timeout starts over
    assert store.acquire(DEST, now=reopened_at)[0] == "deny"
    wait_until(reset_timeout_passed, timeout=5, interval=0.01, message="the breaker never reopened")
    assert store.acquire(DEST)[0] == "probe"
    assert store.record(DEST, "success", was_probe=True) == "closed"
    assert store.acquire(DEST)[0] == "allow"


def test_4xx_and_429_do_not_count(redis_url):
    store = BreakerStore(redis.Redis.from_url(redis_url, decode_responses=True), threshold=2,
                         reset_timeout=30, probe_lease=10)
    for _ in range(10):
        assert store.record(DEST, "neutral", was_probe=False) == "closed"
    store.record(DEST, "failure", was_probe=False)
    store.record(DEST, "success", was_probe=False)  # a success breaks the streak
    assert store.record(DEST, "failure", was_probe=False) == "closed"
    assert store.record(DEST, "failure", was_probe=False) == "open"


def test_while_a_probe_is_out_the_others_look_again_soon_not_after_its_whole_lease(r, redis_url):
    """A recovered destination should not wait out a 25 s probe lease: denied deliveries come
    back after a recheck interval, then flow once the probe has closed the breaker."""
    store = BreakerStore(redis.Redis.from_url(redis_url, decode_responses=True),
                         threshold=1, reset_timeout=60, probe_lease=25)
    origin = "https://recheck.example:443"
    store.record(origin, BreakerResult.FAILURE, was_probe=False, now=1000.0)
    assert store.acquire(origin, now=1000.0) == (BreakerDecision.DENY, 60.0)  # open: full wait
    assert store.acquire(origin, now=1060.0)[0] is BreakerDecision.PROBE
    decision, wait = store.acquire(origin, now=1061.0)  # the probe is out for up to 25 s
    assert decision is BreakerDecision.DENY and wait == 6.0  # reset_timeout / 10, not 24 s
    store.record(origin, BreakerResult.SUCCESS, was_probe=True, now=1062.0)
    assert store.acquire(origin, now=1067.0)[0] is BreakerDecision.ALLOW
