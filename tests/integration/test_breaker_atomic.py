"""Breaker transitions are atomic across processes (real Redis, real OS processes)."""

from __future__ import annotations

import multiprocessing as mp
import time

import redis

from compliance.store.breakers import BreakerStore

DEST = "https://flaky.example.com:443"


def _hammer_failures(url: str, n: int, start: float, out: mp.Queue) -> None:
    store = BreakerStore(redis.Redis.from_url(url, decode_responses=True), threshold=5,
                         reset_timeout=30, probe_lease=10)
    while time.time() < start:
        pass
    out.put([store.record(DEST, "failure", was_probe=False) for _ in range(n)])


def _try_acquire(url: str, start: float, out: mp.Queue) -> None:
    store = BreakerStore(redis.Redis.from_url(url, decode_responses=True), threshold=5,
                         reset_timeout=0.2, probe_lease=10)
    while time.time() < start:
        pass
    out.put(store.acquire(DEST)[0])


def _run(target, args_list):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for args in args_list]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return results


def test_opens_exactly_once_at_the_fifth_failure_across_processes(redis_url, r):
    start = time.time() + 0.5
    results = _run(_hammer_failures, [(redis_url, 3, start) for _ in range(4)])  # 12 failures
    flat = [state for batch in results for state in batch]
    assert flat.count("closed") == 4  # failures 1..4 leave it closed, whichever process sent them
    state = r.hgetall(f"compliance:breaker:{DEST}")
    assert state["state"] == "open"
    assert state["failures"] == "5"  # counting stopped at the opening transition
    assert state["times_opened"] == "1"


def test_half_open_lets_exactly_one_probe_through_the_fleet(redis_url, r):
    store = BreakerStore(redis.Redis.from_url(redis_url, decode_responses=True), threshold=5,
                         reset_timeout=0.2, probe_lease=10)
    for _ in range(5):
        store.record(DEST, "failure", was_probe=False)
    assert store.acquire(DEST)[0] == "deny"
    time.sleep(0.3)
    start = time.time() + 0.5
    decisions = _run(_try_acquire, [(redis_url, start) for _ in range(8)])
    assert sorted(decisions) == ["deny"] * 7 + ["probe"]
    # the probe's failure re-opens it; a success would have closed it
    assert store.record(DEST, "failure", was_probe=True) == "open"
    time.sleep(0.3)
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
