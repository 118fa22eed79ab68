"""Breaker state is bounded: idle breakers expire with their index entries, and the public reads
(/circuit-breakers, /health, /metrics) cost the same with 50,000 breakers as with 10.

Cost is counted in Redis commands per request (INFO commandstats on the real server), not in
seconds, so the test does not depend on the machine's speed.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from compliance.api.app import create_app
from compliance.store import breakers as breaker_module
from compliance.store.breakers import BreakerResult, BreakerStore
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, settings_from_env

SUCCESS, FAILURE = BreakerResult.SUCCESS, BreakerResult.FAILURE


def store(r, *, idle_ttl: float = 100.0) -> BreakerStore:
    return BreakerStore(r, threshold=5, reset_timeout=10, probe_lease=5, idle_ttl=idle_ttl)


def open_breaker(b: BreakerStore, origin: str, now: float) -> None:
    for _ in range(b.threshold):
        b.record(origin, FAILURE, was_probe=False, now=now)


def test_a_breaker_expires_after_its_idle_ttl_and_leaves_the_index(r):
    b = store(r, idle_ttl=100)
    now = time.time()
    b.record("https://a.example:443", SUCCESS, was_probe=False, now=now)
    assert 99 <= r.ttl("compliance:breaker:https://a.example:443") <= 100
    open_breaker(b, "https://b.example:443", now)
    assert 99 <= r.ttl("compliance:breaker:https://b.example:443") <= 100
    assert r.zrange("compliance:index:breakers:not_closed", 0, -1) == ["https://b.example:443"]
    # any later result (another origin's) prunes index entries older than the TTL
    b.record("https://c.example:443", SUCCESS, was_probe=False, now=now + 101)
    assert r.zrange("compliance:index:breakers", 0, -1) == ["https://c.example:443"]
    # a neutral result on an unknown origin creates nothing
    b.record("https://d.example:443", BreakerResult.NEUTRAL, was_probe=False, now=now + 101)
    assert r.zrange("compliance:index:breakers", 0, -1) == ["https://c.example:443"]
    # the open one's hash expires by its TTL (simulated: deleted); its not-closed entry is pruned
    # on the next read, and counts agree with the listing
    r.delete("compliance:breaker:https://b.example:443")
    assert b.counts(now=now + 101) == {"closed": 1, "open": 0, "half_open": 0}
    assert r.zrange("compliance:index:breakers:not_closed", 0, -1) == []
    assert [s.destination for s in b.all(now=now + 101)] == ["https://c.example:443"]


def test_counts_and_pages_by_state_match_the_full_listing(r):
    b = store(r)
    now = time.time()
    for i in range(6):
        b.record(f"https://closed{i}.example:443", SUCCESS, was_probe=False, now=now - i)
    for i in range(3):
        open_breaker(b, f"https://open{i}.example:443", now - i)
    for i in range(2):  # opened longer ago than the reset timeout: reported half-open
        open_breaker(b, f"https://half{i}.example:443", now - 20 - i)
    # a probe that succeeds closes it and takes it out of the not-closed index
    open_breaker(b, "https://healed.example:443", now - 30)
    assert b.acquire("https://healed.example:443", now=now)[0] == "probe"
    assert b.record("https://healed.example:443", SUCCESS, was_probe=True, now=now) == "closed"
    listed = b.all(now=now)
    by_state = {s: sorted(x.destination for x in listed if x.state == s)
                for s in ("closed", "open", "half_open")}
    assert b.counts(now=now) == {s: len(v) for s, v in by_state.items()} == {
        "closed": 7, "open": 3, "half_open": 2}
    items, total = b.page(offset=0, limit=2, state="open", now=now)
    assert total == 3 and [x.destination for x in items] == ["https://open0.example:443",
                                                              "https://open1.example:443"]
    items, total = b.page(offset=0, limit=10, state="half_open", now=now)
    assert total == 2 and {x.state for x in items} == {"half_open"}
    items, total = b.page(offset=10, limit=5, now=now)
    assert total == 12 and len(items) == 2


def test_reset_keeps_the_idle_ttl_and_clears_the_not_closed_entry(r):
    b = store(r)
    now = time.time()
    open_breaker(b, "https://x.example:443", now)
    assert b.reset("https://x.example:443")
    assert 0 < r.ttl("compliance:breaker:https://x.example:443") <= 100
    assert b.counts() == {"closed": 1, "open": 0, "half_open": 0}


def seed(r, n: int, *, open_every: int, now: float, prefix: str) -> None:
    """``n`` breakers written by the store's own Lua, pipelined; every ``open_every``-th open."""
    b = BreakerStore(r, threshold=1, reset_timeout=60, probe_lease=5, idle_ttl=3600)
    script = r.register_script(breaker_module._RECORD)
    for start in range(0, n, 5000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 5000)):
            origin = f"https://{prefix}{i}.example:443"
            result = FAILURE if i % open_every == 0 else SUCCESS
            script(keys=b._keys(origin), args=b._args(origin, result, False, now), client=pipe)
        pipe.execute()


def commands(r) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info"}


def cost(r, call) -> tuple[int, object]:
    before = commands(r)
    result = call()
    after = commands(r)
    return sum(after.values()) - sum(before.values()), result


@pytest.fixture
def stable_api(env):
    """The app with every slow /health probe cached for the test's length, so a request's Redis
    commands are the same from one request to the next, and a reset timeout (10 min) no test
    outlasts, so open breakers stay open while it runs."""
    settings = settings_from_env({**env, "COMPLIANCE_HEALTH_CACHE_SECONDS": "3600",
                                  "COMPLIANCE_METRICS_MAX_BREAKER_SERIES": "5",
                                  "COMPLIANCE_BREAKER_RESET_TIMEOUT": "600",
                                  "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "2000"})
    with TestClient(create_app(settings)) as client:
        yield client


def test_public_reads_cost_the_same_with_50000_breakers_as_with_10(stable_api, r):
    now = time.time()
    admin = {"X-API-Key": ADMIN_KEY}
    seed(r, 10, open_every=2, now=now, prefix="small")  # 5 open: as many as the series cap
    endpoints = {
        "/circuit-breakers": lambda: stable_api.get("/circuit-breakers?limit=10", headers=admin),
        "/health": lambda: stable_api.get("/health"),
        "/metrics": lambda: stable_api.get("/metrics"),
    }
    for call in endpoints.values():  # warm up: connections, script loads, cached probes
        call()
        call()
    small = {name: cost(r, call) for name, call in endpoints.items()}
    seed(r, 49_990, open_every=50, now=now, prefix="big")  # ~1,000 more open
    assert r.zcard("compliance:index:breakers") == 50_000
    big = {name: cost(r, call) for name, call in endpoints.items()}

    for name in endpoints:
        assert small[name][1].status_code == big[name][1].status_code == 200, name
        assert small[name][0] == big[name][0], (name, small[name][0], big[name][0])

    listing = big["/circuit-breakers"][1].json()
    assert len(listing["items"]) == 10 and listing["total"] == 50_000
    assert listing["counts"] == {"closed": 49_000 - 5, "open": 1_000 + 5, "half_open": 0}
    health = big["/health"][1].json()["components"]["circuit_breakers"]
    assert health == {**health, "status": "degraded", "closed": 48_995, "open": 1_005,
                      "half_open": 0}
    assert not any(isinstance(v, list) for v in health.values())  # counts, not lists

    families = {f.name: f for f in text_string_to_metric_families(big["/metrics"][1].text)}
    series = families["circuit_breaker_state"].samples
    assert len(series) == 5 and {s.value for s in series} == {2.0}
    totals = {s.labels["state"]: s.value for s in families["circuit_breakers"].samples}
    assert totals == {"closed": 48_995, "open": 1_005, "half_open": 0}


def test_closed_breakers_are_counted_not_exported_per_destination(stable_api, r):
    seed(r, 200, open_every=10**9, now=time.time(), prefix="c")  # i=0 opens: 199 closed, 1 open
    families = {f.name: f for f in text_string_to_metric_families(stable_api.get("/metrics").text)}
    assert [s.labels["destination"] for s in families["circuit_breaker_state"].samples] == [
        "https://c0.example:443"]
    totals = {s.labels["state"]: s.value for s in families["circuit_breakers"].samples}
    assert totals == {"closed": 199, "open": 1, "half_open": 0}


def test_circuit_breakers_listing_needs_the_admin_key_and_pages(settings, r):
    seed(r, 30, open_every=3, now=time.time(), prefix="p")
    with TestClient(create_app(settings)) as client:
        assert client.get("/circuit-breakers").status_code == 401
        assert client.get("/circuit-breakers", headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
        admin = {"X-API-Key": ADMIN_KEY}
        first = client.get("/circuit-breakers?limit=20", headers=admin).json()
        rest = client.get("/circuit-breakers?limit=20&offset=20", headers=admin).json()
        assert first["total"] == 30 and len(first["items"]) == 20 and len(rest["items"]) == 10
        names = [b["destination"] for b in first["items"] + rest["items"]]
        assert len(set(names)) == 30
        opened = client.get("/circuit-breakers?state=open&limit=500", headers=admin).json()
        assert opened["total"] == 10 and {b["state"] for b in opened["items"]} == {"open"}
        assert client.get("/circuit-breakers?state=bogus", headers=admin).status_code == 422
        assert client.get("/circuit-breakers?limit=501", headers=admin).status_code == 422


def test_a_reader_with_a_shorter_ttl_never_drops_a_live_breaker(r):
    """The operator reads breakers with its own settings: reads prune only missing hashes."""
    now = time.time()
    store(r, idle_ttl=3600).record("https://live.example:443", SUCCESS, was_probe=False, now=now - 600)
    reader = store(r, idle_ttl=60)
    assert reader.counts(now=now) == {"closed": 1, "open": 0, "half_open": 0}
    assert r.zrange("compliance:index:breakers", 0, -1) == ["https://live.example:443"]
