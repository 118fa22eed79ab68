"""The asyncio delivery engine in a real worker process: many in flight, the same rules."""

from __future__ import annotations

import collections

import pytest
from standardwebhooks.webhooks import Webhook

from compliance.delivery.models import Envelope
from compliance.store.records import Status
from compliance.wiring import Container
from tests.support.receiver import Reply
from tests.support.services import SECRET, wait_until

pytestmark = pytest.mark.timeout(240)


def test_the_engine_holds_many_deliveries_in_flight_each_signed_and_sent_once(
        api, receiver, start_worker, r):
    receiver.default = Reply(200, delay=0.5)
    # The backlog is there before the worker starts: accepted while it runs, at a busy
    # machine's pace (under 24 a second), 40 webhooks of 0.5 s each never overlap 12 at once.
    ids = []
    for i in range(40):
        response = api.post("/webhooks", json={"url": receiver.url(), "event": "e", "payload": {"i": i}})
        assert response.status_code == 202
        ids.append(response.json()["webhook_id"])
    start_worker(kind="deliveries", concurrency=16, name="engine")
    # one Celery thread could hold one; the engine holds the other 15
    wait_until(lambda: len(receiver.in_flight()) >= 12, timeout=30,
               message="the engine never had many deliveries in flight")
    wait_until(lambda: all(api.get(f"/webhook-statuses/{i}").json()["status"] == "delivered"
                           for i in ids), timeout=60, interval=0.2)
    got = receiver.received()
    assert collections.Counter(q.headers["webhook-id"] for q in got) == dict.fromkeys(ids, 1)
    verifier = Webhook(SECRET)
    for request in got:
        verifier.verify(request.body, request.headers)  # raises on a bad signature
    assert r.llen("compliance-compliance_webhooks") == 0
    assert r.zcard("compliance:schedule:leased") == 0  # nothing left leased
    assert not r.keys("compliance:webhook:*")  # envelopes go once delivered


def test_the_engine_refuses_a_forbidden_address_at_delivery_time(settings, start_worker, api,
                                                                 admin_headers):
    """The API checks a URL when it accepts it; DNS may change by delivery time, so the worker
    checks again (here the record names a link-local address, as a rebinding would)."""
    container = Container(settings)
    ids = [f"wh_forbidden_{i}" for i in range(20)]
    for webhook_id in ids:
        container.submitter.submit(Envelope(webhook_id=webhook_id, event="e", payload={},
                                            url="http://169.254.169.254:8080/latest"))
    container.close()
    start_worker(kind="deliveries", concurrency=8, name="guard")
    wait_until(lambda: all(api.get(f"/webhook-statuses/{i}").json()["status"] == "failed"
                           for i in ids), timeout=60, interval=0.2)
    for webhook_id in ids:
        entry = api.get(f"/dead-letters/{webhook_id}", headers=admin_headers).json()
        assert entry["error_type"] == "validation", entry


def test_a_small_storm_waits_outside_worker_memory_and_drains_on_recovery(
        settings, receiver, start_worker, r):
    """2,000 webhooks to a destination answering 503: the breaker shields it, the backlog waits
    parked with its destination in Redis (no countdown message in any worker, nothing looked at
    again until the breaker lets requests by), and all are delivered once, the destination never
    seeing more than its cap at once (64 could go)."""
    receiver.default = Reply(503)
    container = Container(settings)
    ids = [f"wh_storm_{i}" for i in range(2000)]
    for webhook_id in ids:
        container.submitter.submit(Envelope(webhook_id=webhook_id, event="storm", payload={},
                                            url=receiver.url()))
    start_worker(kind="deliveries", concurrency=64, name="stormy",
                 extra_env={"COMPLIANCE_DESTINATION_MAX_IN_FLIGHT": "10"})
    parked = f"compliance:parked:http://127.0.0.1:{receiver.port}"
    wait_until(lambda: r.zcard(parked) >= 1500, timeout=60,
               message="the backlog never waited, parked with its destination")
    # counted exactly per destination, as /metrics shows it
    assert container.breakers.parked()[f"http://127.0.0.1:{receiver.port}"] == r.zcard(parked)
    assert r.hlen("compliance-unacked") <= 1  # at most the Celery thread's one message
    # the parked backlog is not looked at again while the breaker stays open: over two more
    # probe windows the destination sees the probes and nothing else
    breaker = f"compliance:breaker:http://127.0.0.1:{receiver.port}"
    opened = int(r.hget(breaker, "times_opened"))
    before = len(receiver.received())
    wait_until(lambda: int(r.hget(breaker, "times_opened")) >= opened + 2, timeout=30)
    assert len(receiver.received()) - before <= 2
    shielded = len(receiver.received())
    assert shielded < 400, f"the open breaker let {shielded} requests through"
    # it recovers slowly enough (50 ms an answer) that 64 could be in flight without the cap
    receiver.default = Reply(200, delay=0.05)
    wait_until(lambda: container.statuses.count(Status.DELIVERED) == len(ids), timeout=150,
               interval=0.5, message="the storm's backlog did not drain after recovery")
    ok = collections.Counter(q.headers["webhook-id"] for q in receiver.received())
    assert set(ids) <= set(ok)
    assert receiver.peak_in_flight <= 10
    container.close()
