"""Faults: a worker SIGKILLed or SIGTERMed mid-delivery, a receiver that hangs."""

from __future__ import annotations

import collections
import signal
import time

import pytest

from tests.support.receiver import Reply
from tests.support.services import wait_until

pytestmark = pytest.mark.timeout(240)

# Limits shortened together so the broker redelivers a killed worker's messages within seconds.
QUICK_REDELIVERY = {
    "COMPLIANCE_TASK_TIME_LIMIT": "6",
    "COMPLIANCE_TASK_SOFT_TIME_LIMIT": "5",
    "COMPLIANCE_DELIVERY_TASK_TIME_LIMIT": "5",
    "COMPLIANCE_RETRY_AFTER_MAX_SECONDS": "1",
    "COMPLIANCE_BREAKER_RESET_TIMEOUT": "0.4",
    "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "8",
    "COMPLIANCE_READ_TIMEOUT": "5",
    "COMPLIANCE_BROKER_RESTORE_INTERVAL": "1",
}


def submit_many(api, receiver, n, path="/slow"):
    ids = []
    for i in range(n):
        response = api.post("/webhooks", json={"url": receiver.url(path), "event": "e", "payload": {"i": i}})
        assert response.status_code == 202
        ids.append(response.json()["webhook_id"])
    return ids


def all_delivered(api, ids):
    return all(api.get(f"/webhook-statuses/{i}").json()["status"] == "delivered" for i in ids)


def test_sigkill_mid_delivery_loses_nothing(api, receiver, start_worker, env, monkeypatch):
    receiver.default = Reply(200, delay=1.5)
    extra = QUICK_REDELIVERY
    # the API process must agree with the workers' visibility timeout (kombu restores by it)
    worker = start_worker(concurrency=8, extra_env=extra, name="victim")
    ids = submit_many(api, receiver, 12)
    # kill -9 while deliveries are in flight: requests arrived at the receiver, not yet answered
    # (12 webhooks, 8 threads: every thread is mid-exchange once 8 are held)
    held = wait_until(lambda: len(got := receiver.in_flight()) >= 8 and got, timeout=30,
                      message="deliveries never got in flight at the receiver")
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    killed_mid_delivery = {r.headers["webhook-id"] for r in held}
    assert killed_mid_delivery <= set(ids)
    start_worker(concurrency=8, extra_env=extra, name="rescuer")
    wait_until(lambda: all_delivered(api, ids), timeout=120, interval=0.5,
               message="some accepted webhooks were never delivered after the crash")
    delivered_ids = collections.Counter(r.headers["webhook-id"] for r in receiver.received())
    assert set(ids) <= set(delivered_ids)  # losses: none
    duplicates = sum(c - 1 for c in delivered_ids.values())
    print(f"sigkill: {len(ids)} webhooks, {len(killed_mid_delivery)} killed mid-delivery, "
          f"{duplicates} duplicate deliveries (allowed)")


def test_sigterm_finishes_or_requeues_in_flight_work(api, receiver, start_worker, settings, r):
    """SIGTERM while deliveries are mid-exchange: the worker lets the running ones finish (each
    delivered exactly once, before it exits), leaves the ones it had not started in Redis, and
    exits 0; a new worker delivers those."""
    def status_of(webhook_id):
        return api.get(f"/webhook-statuses/{webhook_id}").json()["status"]

    receiver.default = Reply(200, delay=2.0)
    worker = start_worker(concurrency=4, extra_env=QUICK_REDELIVERY, name="graceful")
    ids = submit_many(api, receiver, 10)
    # every thread is mid-exchange (4 requests held by the receiver); 6 webhooks wait behind them
    held = wait_until(lambda: len(got := receiver.in_flight()) == 4 and got, timeout=30,
                      message="deliveries never got in flight at the receiver")
    in_flight = {q.headers["webhook-id"] for q in held}
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(30)
    assert time.monotonic() - started < 30
    assert code == 0, worker.log()[-2000:]

    # finished: what was in flight was answered and recorded as delivered before the exit
    assert {i: status_of(i) for i in in_flight} == dict.fromkeys(in_flight, "delivered")
    not_started = [i for i in ids if i not in in_flight]
    assert len(not_started) == 6
    assert {q.headers["webhook-id"] for q in receiver.arrived()} == in_flight  # nothing else began
    # requeued: the 6 not started still wait in Redis: the broker's (queued, or unacked and
    # restored by it), or handed by the Celery thread to the engine (its list, still leased)
    queued = r.llen(f"{settings.broker_key_prefix}{settings.delivery_queue_name}")
    unacked = r.hlen(f"{settings.broker_key_prefix}unacked")
    handed = r.llen("compliance:schedule:handed")
    assert queued + unacked + handed == len(not_started), (queued, unacked, handed)
    assert all(status_of(i) == "pending" for i in not_started)

    start_worker(concurrency=8, extra_env=QUICK_REDELIVERY, name="after")
    wait_until(lambda: all_delivered(api, ids), timeout=90, interval=0.5,
               message="work the stopped worker had not started was never delivered")
    deliveries = collections.Counter(q.headers["webhook-id"] for q in receiver.received())
    assert all(deliveries[i] == 1 for i in in_flight), deliveries  # finished, not redone


def test_hung_receiver_ends_retrying_or_failed_never_stuck(api, receiver, start_worker, admin_headers):
    receiver.default = Reply(hang=30)
    start_worker(concurrency=4)
    (webhook_id,) = submit_many(api, receiver, 1, path="/hung")
    retrying = wait_until(lambda: (s := api.get(f"/webhook-statuses/{webhook_id}").json())["status"]
                          in ("retrying", "failed") and s, timeout=30)
    assert retrying["last_error_type"] == "timeout"
    final = wait_until(lambda: (s := api.get(f"/webhook-statuses/{webhook_id}").json())["status"]
                       == "failed" and s, timeout=90, interval=0.5)
    assert final["attempts"] == 4
    entry = api.get(f"/dead-letters/{webhook_id}", headers=admin_headers).json()
    assert {a["error_type"] for a in entry["attempts"]} == {"timeout"}


def test_a_malformed_delivery_message_is_logged_and_acked_not_looped(start_worker, r, settings):
    """A message the service cannot read (hand-made, or from an incompatible version) can never be
    delivered: it is dropped once, loudly, instead of being requeued forever."""
    from compliance.messaging import DELIVER_TASK, create_celery_app

    producer = create_celery_app(settings, include_tasks=False)
    producer.send_task(DELIVER_TASK, args=[{"webhook_id": "wh_garbled", "url": 42}],
                       queue=settings.delivery_queue_name)
    producer.close()
    worker = start_worker(kind="deliveries")
    wait_until(lambda: b"malformed delivery message dropped" in worker.log_path.read_bytes(), timeout=30,
               message="the malformed message was not reported")
    wait_until(lambda: r.llen(f"compliance-{settings.delivery_queue_name}") == 0
               and r.hlen("compliance-unacked") == 0, timeout=10, message="the message is still queued")
    assert b"wh_garbled" in worker.log_path.read_bytes()
