"""The fleet-wide cap on requests in flight per destination, on a real Redis and real workers.

A webhook that finds its destination at the cap is parked (its lease and run given back) and
waits, in order, for a slot; a finished delivery lets the next one go at once, with its slot
reserved; the sweeper lets go whatever slot releases missed (a worker died holding slots).
"""

from __future__ import annotations

import collections
import time

import pytest

from compliance.delivery.models import Envelope
from compliance.settings import Settings
from compliance.store import keys
from compliance.store.breakers import BreakerDecision, BreakerResult
from compliance.store.records import Status
from compliance.wiring import Container
from tests.support.receiver import Reply
from tests.support.services import settings_from_env, wait_until

pytestmark = pytest.mark.timeout(240)
ORIGIN = "http://127.0.0.1:9"


def _container(env: dict[str, str], **extra: str) -> Container:
    settings: Settings = settings_from_env({**env, **extra})
    return Container(settings)


def _submit(container: Container, *ids: str, url: str = f"{ORIGIN}/hook") -> None:
    for webhook_id in ids:
        container.submitter.submit(Envelope(webhook_id=webhook_id, event="e", payload={}, url=url))


def _claim_and_acquire(container: Container, webhook_id: str, now: float) -> BreakerDecision:
    claim = container.schedule.claim(webhook_id, now=now, lease_until=now + 60)
    assert claim.state.value == "claimed", claim
    decision, _ = container.breakers.acquire(ORIGIN, now=now, webhook_id=webhook_id)
    return decision


def test_at_the_cap_a_webhook_is_parked_in_order_and_a_finished_one_lets_the_next_go(env, r):
    container = _container(env, COMPLIANCE_DESTINATION_MAX_IN_FLIGHT="2")
    _submit(container, "w1", "w2", "w3", "w4", "w5")
    now = time.time()
    assert _claim_and_acquire(container, "w1", now) is BreakerDecision.ALLOW
    assert _claim_and_acquire(container, "w2", now) is BreakerDecision.ALLOW
    assert _claim_and_acquire(container, "w3", now + 0.001) is BreakerDecision.PARKED
    assert _claim_and_acquire(container, "w4", now + 0.002) is BreakerDecision.PARKED
    # parked: in order, neither leased nor due, its lease and its run given back
    assert r.zrange(keys.parked_key(ORIGIN), 0, -1) == ["w3", "w4"]
    for parked in ("w3", "w4"):
        assert r.zscore(keys.LEASE_INDEX, parked) is None
        assert r.zscore(keys.DUE_INDEX, parked) is None
        assert r.hget(keys.webhook_key(parked), "held_until") is None
        assert r.hget(keys.webhook_key(parked), "runs") == "0"
    assert container.breakers.parked() == {ORIGIN: 2}
    assert container.breakers.in_flight(ORIGIN, now) == 2

    # w1 finishes: w3 (the first parked) is due at once, its slot reserved for it
    container.breakers.record(ORIGIN, BreakerResult.SUCCESS, was_probe=False, now=now + 0.01,
                              webhook_id="w1")
    assert r.zrange(keys.parked_key(ORIGIN), 0, -1) == ["w4"]
    assert r.zscore(keys.DUE_INDEX, "w3") == pytest.approx(now + 0.01)
    assert set(r.zrange(keys.inflight_key(ORIGIN), 0, -1)) == {"w2", "w3"}
    # w3 is taken and goes out on its reserved slot; a newcomer still finds the cap full
    assert _claim_and_acquire(container, "w3", now + 0.02) is BreakerDecision.ALLOW
    assert container.breakers.in_flight(ORIGIN, now + 0.02) == 2
    assert _claim_and_acquire(container, "w5", now + 0.03) is BreakerDecision.PARKED
    assert r.zrange(keys.parked_key(ORIGIN), 0, -1) == ["w4", "w5"]
    # a refused attempt gives its slot back too, and the next parked one goes
    container.breakers.give_back(ORIGIN, "w2", now=now + 0.04)
    assert r.zrange(keys.parked_key(ORIGIN), 0, -1) == ["w5"]
    assert r.zscore(keys.DUE_INDEX, "w4") is not None
    container.close()


def test_slots_of_a_dead_worker_lapse_and_the_sweeper_lets_parked_webhooks_go(env, r):
    container = _container(env, COMPLIANCE_DESTINATION_MAX_IN_FLIGHT="1")
    _submit(container, "held", "waiting")
    now = time.time()
    assert _claim_and_acquire(container, "held", now) is BreakerDecision.ALLOW
    assert _claim_and_acquire(container, "waiting", now) is BreakerDecision.PARKED
    # the worker holding "held" dies: nothing releases its slot; until it lapses, nothing moves
    assert container.breakers.sweep_parked(now=now + 1) == 0
    lapsed = now + container.breakers.slots.lease + 1
    assert container.breakers.sweep_parked(now=lapsed) == 1
    assert r.zscore(keys.DUE_INDEX, "waiting") == pytest.approx(lapsed)
    assert not r.exists(keys.parked_key(ORIGIN))
    assert r.zscore(keys.PARKED_INDEX, ORIGIN) is None  # nothing parked: nothing to look at
    container.close()


def test_a_recovered_destination_ramps_up_from_one_request_in_flight(env, r):
    container = _container(env, COMPLIANCE_DESTINATION_MAX_IN_FLIGHT="8",
                           COMPLIANCE_DESTINATION_RAMP_SECONDS="10",
                           COMPLIANCE_BREAKER_FAILURE_THRESHOLD="1")
    ids = [f"r{i}" for i in range(20)]
    _submit(container, *ids)
    b = container.breakers
    now = time.time()
    b.record(ORIGIN, BreakerResult.FAILURE, was_probe=False, now=now)  # open
    reopen = now + b.reset_timeout
    assert _claim_and_acquire(container, "r0", reopen) is BreakerDecision.PROBE
    assert b.record(ORIGIN, BreakerResult.SUCCESS, was_probe=True, now=reopen,
                    webhook_id="r0") == "closed"

    def allowed(at: float, batch: list[str]) -> int:
        """How many of ``batch`` get a slot at ``at`` (all slots free before)."""
        r.delete(keys.inflight_key(ORIGIN), keys.parked_key(ORIGIN))
        return sum(_claim_and_acquire(container, i, at) is BreakerDecision.ALLOW for i in batch)

    # just closed: one in flight; 20 s later (two doublings) four; later the whole cap, no more
    assert allowed(reopen + 0.1, ids[1:4]) == 1
    assert allowed(reopen + 20.5, ids[4:10]) == 4
    assert allowed(reopen + 100, ids[10:20]) == 8
    container.close()


def test_two_workers_never_send_one_destination_more_than_its_cap(env, receiver, start_worker,
                                                                  r):
    """Each worker holds at most two deliveries in flight (its engine one, its Celery thread
    one), so three at once at the receiver means both were sending; four would break the cap."""
    cap = 3
    receiver.default = Reply(200, delay=0.3)
    extra = {"COMPLIANCE_DESTINATION_MAX_IN_FLIGHT": str(cap)}
    container = _container(env, **extra)
    start_worker(kind="deliveries", concurrency=2, name="cap-a", extra_env=extra)
    start_worker(kind="deliveries", concurrency=2, name="cap-b", extra_env=extra)
    ids = [f"wh_cap_{i}" for i in range(40)]
    _submit(container, *ids, url=receiver.url())
    wait_until(lambda: container.statuses.count(Status.DELIVERED) == len(ids), timeout=120,
               interval=0.2, message="capped deliveries did not all arrive")
    assert receiver.peak_in_flight == cap, receiver.peak_in_flight  # reached, never passed
    sent = collections.Counter(q.headers["webhook-id"] for q in receiver.received())
    assert sent == dict.fromkeys(ids, 1)
    destination = receiver.url().rsplit("/", 1)[0]
    assert not r.exists(keys.parked_key(destination))
    assert container.breakers.parked() == {}
    container.close()


def test_a_webhook_parked_too_long_behind_an_open_breaker_is_dead_lettered(env, r):
    """While the breaker stays open, parked webhooks are not looked at; once one has waited
    the longest deferral allowed, the sweeper makes it due and its worker dead-letters it."""
    settings = settings_from_env({**env, "COMPLIANCE_BREAKER_FAILURE_THRESHOLD": "1",
                                  "COMPLIANCE_BREAKER_RESET_TIMEOUT": "600",
                                  "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "3000",
                                  "COMPLIANCE_BREAKER_MAX_DEFERRAL_SECONDS": "700"})
    clock = [time.time()]
    container = Container(settings, clock=lambda: clock[0])
    start = clock[0]
    _submit(container, "waits")
    container.breakers.record(ORIGIN, BreakerResult.FAILURE, was_probe=False, now=start)

    def attempt() -> str:
        claim = container.schedule.claim("waits", now=clock[0], lease_until=clock[0] + 60)
        assert claim.state.value == "claimed", claim
        return container.deliverer.attempt(Envelope.model_validate_json(claim.envelope or "")).value

    assert attempt() == "deferred"
    assert r.zrange(keys.parked_key(ORIGIN), 0, -1) == ["waits"]
    status = container.statuses.get("waits")
    assert status is not None and status.last_error_type == "circuit_open"
    assert status.attempts == 0
    # inside the allowance nothing moves, however often the sweeper looks
    assert container.breakers.sweep_parked(now=start + 300) == 0
    assert container.breakers.sweep_parked(now=start + 701) == 1
    assert r.zscore(keys.DUE_INDEX, "waits") is not None
    # taken again while the breaker is still open (reopened by a failed probe, say)
    container.breakers.record(ORIGIN, BreakerResult.FAILURE, was_probe=False, now=start + 650)
    r.hset(keys.breaker_key(ORIGIN), mapping={"state": "open", "opened_at": start + 650})
    clock[0] = start + 702
    assert attempt() == "dead_lettered"
    final = container.statuses.get("waits")
    assert final is not None and final.status == Status.FAILED
    entry = container.dead_letters.get("waits")
    assert entry is not None and entry.error_type == "circuit_open"
    container.close()


def test_a_breaker_reset_by_hand_lets_its_parked_webhooks_go_on_the_next_sweep(env, r):
    settings = settings_from_env({**env, "COMPLIANCE_BREAKER_FAILURE_THRESHOLD": "1",
                                  "COMPLIANCE_BREAKER_RESET_TIMEOUT": "600",
                                  "COMPLIANCE_BREAKER_MAX_DEFERRAL_SECONDS": "3600",
                                  "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "5000"})
    container = Container(settings)
    ids = [f"held_{i}" for i in range(3)]
    _submit(container, *ids)
    now = time.time()
    container.breakers.record(ORIGIN, BreakerResult.FAILURE, was_probe=False, now=now)
    for webhook_id in ids:
        claim = container.schedule.claim(webhook_id, now=now, lease_until=now + 60)
        env_ = Envelope.model_validate_json(claim.envelope or "")
        assert container.deliverer.attempt(env_).value == "deferred"
    assert container.breakers.parked() == {ORIGIN: 3}
    assert container.breakers.sweep_parked(now=time.time()) == 0  # open: they wait
    assert container.breakers.reset(ORIGIN)
    assert container.breakers.sweep_parked(now=time.time()) == 3
    assert sorted(r.zrange(keys.DUE_INDEX, 0, -1)) == sorted(ids)
    container.close()
