"""End to end: API -> real Redis -> real worker processes -> real loopback receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from compliance.store.breakers import BreakerStore
from tests.support.receiver import Reply
from tests.support.services import SECRET, SECRET_2, wait_until

pytestmark = pytest.mark.timeout(180)


def submit(api, receiver, path="/hook", payload=None, **headers):
    response = api.post("/webhooks", json={"url": receiver.url(path), "event": "report.completed",
                                           "payload": payload or {"n": 1}}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["webhook_id"]


def status_of(api, webhook_id):
    return api.get(f"/webhook-statuses/{webhook_id}").json()


def settled(api, webhook_id, want=("delivered", "failed"), timeout=60):
    return wait_until(lambda: (s := status_of(api, webhook_id)).get("status") in want and s,
                      timeout=timeout, message=f"{webhook_id} never reached {want}")


def test_end_to_end_delivery_signed_with_correlation_id(api, receiver, start_worker, r):
    worker = start_worker()
    webhook_id = submit(api, receiver, payload={"report": "r-1"}, **{"X-Correlation-ID": "corr-e2e-1"})
    (request,) = receiver.wait_for(1)
    body = request.body.decode()
    assert json.loads(body)["data"] == {"report": "r-1"}
    assert json.loads(body)["type"] == "report.completed"
    assert request.headers["webhook-id"] == webhook_id
    assert request.headers["x-correlation-id"] == "corr-e2e-1"
    Webhook(SECRET).verify(body, request.headers)
    record = settled(api, webhook_id)
    assert record["status"] == "delivered" and record["attempts"] == 1
    assert 0 < r.ttl(f"webhook_status:{webhook_id}") <= 1800
    # the worker's JSON log lines about this webhook carry the correlation id
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    delivered = [x for x in lines if x.get("message") == "webhook delivered"]
    assert delivered and delivered[0]["correlation_id"] == "corr-e2e-1"


def test_celery_cli_sees_the_worker(env, start_worker):
    start_worker(name="clicheck")
    run_env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "compliance.worker.celery_app", "status"],
                         env=run_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "clicheck-all@" in out.stdout
    inspect = subprocess.run([sys.executable, "-m", "celery", "-A", "compliance.worker.celery_app",
                              "inspect", "active"], env=run_env, capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0 and "clicheck-all@" in inspect.stdout



def test_celery_inspect_active_shows_a_handed_over_delivery_until_the_engine_is_done(
        api, receiver, env, start_worker):
    """The Celery thread hands each signal it pops to the delivery engine and stays active until
    the engine is done with it: `celery inspect active` shows the delivery at work (and that thread
    takes no other signal meanwhile), then nothing once it is delivered."""
    worker = start_worker(kind="deliveries", name="seen", extra_env={"COMPLIANCE_READ_TIMEOUT": "20"})
    run_env = {**os.environ, **env}
    receiver.default = Reply(200, delay=6)
    # The idle engine polls with a back-off; the Celery thread waits in BRPOP, which Redis serves
    # the moment a signal is pushed: this webhook goes through the Celery thread.
    webhook_id = submit(api, receiver)

    def active() -> str:
        out = subprocess.run([sys.executable, "-m", "celery", "-A", "compliance.worker.celery_app",
                              "inspect", "active", "--json"], env=run_env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode in (0, 69), out.stderr
        return out.stdout

    wait_until(receiver.arrived, timeout=30, message="nothing arrived")  # held 6 s
    assert webhook_id in active(), worker.log()[-3000:]
    settled(api, webhook_id, want=("delivered",))
    wait_until(lambda: webhook_id not in active(), timeout=20,
               message="the task stayed active after its webhook was delivered")

# path: (replies, final status, attempts, error type)
RETRY_TABLE = {
    "/r500-then-ok": ([Reply(500), Reply(502), Reply(200)], "delivered", 3, None),
    "/r503-exhausted": ([Reply(503)] * 4, "failed", 4, "http_5xx"),
    "/r400-final": ([Reply(400)], "failed", 1, "http_4xx"),
    "/r404-final": ([Reply(404)], "failed", 1, "http_4xx"),
    "/r408-retry": ([Reply(408), Reply(200)], "delivered", 2, None),
    "/r425-retry": ([Reply(425), Reply(204)], "delivered", 2, None),
    "/r429-retry-after": ([Reply(429, headers={"Retry-After": "1"}), Reply(200)], "delivered", 2, None),
    "/r301-not-followed": ([Reply(301, headers={"Location": "/elsewhere"})], "failed", 1, "redirect"),
    "/reset-then-ok": ([Reply(reset=True), Reply(200)], "delivered", 2, None),
    "/timeout-then-ok": ([Reply(hang=4), Reply(200)], "delivered", 2, None),
}


def test_every_row_of_the_retry_table(api, receiver, start_worker, admin_headers):
    for path, (replies, *_rest) in RETRY_TABLE.items():
        receiver.script(path, *replies)
    start_worker(concurrency=16)
    ids = {path: submit(api, receiver, path) for path in RETRY_TABLE}
    for path, (_replies, final, attempts, error_type) in RETRY_TABLE.items():
        record = settled(api, ids[path])
        allowed = attempts if isinstance(attempts, tuple) else (attempts,)
        assert record["status"] == final and record["attempts"] in allowed, (path, record)
        if final == "failed":
            entry = api.get(f"/dead-letters/{ids[path]}", headers=admin_headers).json()
            assert entry["error_type"] == error_type, (path, entry)
            assert len(entry["attempts"]) in allowed
    assert receiver.received("/elsewhere") == []  # redirects are never followed
    # Retry-After: the retry came no sooner than the receiver asked
    first, second = receiver.received("/r429-retry-after")[:2]
    assert second.at - first.at >= 0.9
    # retries keep webhook-id and are signed again with a fresh timestamp
    attempts = receiver.received("/r500-then-ok")
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    for attempt in attempts:
        Webhook(SECRET).verify(attempt.body.decode(), attempt.headers)


def test_dead_letter_contents_and_replay(api, receiver, start_worker, admin_headers, r):
    receiver.script("/dlq", Reply(500), Reply(500), Reply(500), Reply(503))
    start_worker()
    webhook_id = submit(api, receiver, "/dlq", payload={"secret": "no"}, **{"X-Correlation-ID": "corr-dlq"})
    assert settled(api, webhook_id)["status"] == "failed"
    entry = api.get(f"/dead-letters/{webhook_id}", headers=admin_headers).json()
    assert entry["payload"] == {"secret": "no"}
    assert entry["correlation_id"] == "corr-dlq"
    assert entry["destination"] == receiver.url("/dlq")
    assert [a["status_code"] for a in entry["attempts"]] == [500, 500, 500, 503]
    assert all(a["error_type"] == "http_5xx" and a["duration_seconds"] >= 0 and a["at"] for a in entry["attempts"])
    assert entry["headers"]["webhook-id"] == webhook_id
    assert "webhook-signature" not in entry["headers"]
    assert 2592000 - 10 <= r.ttl(f"dead_letter:webhook:{webhook_id}") <= 2592000
    assert len(r.keys("dead_letter:webhook:*")) == 1

    # replay: same id, fresh attempt budget, entry leaves the DLQ
    response = api.post(f"/dead-letters/{webhook_id}/replay", headers=admin_headers)
    assert response.status_code == 202
    record = settled(api, webhook_id, want=("delivered",))
    assert record["attempts"] == 1
    assert receiver.received("/dlq")[-1].headers["webhook-id"] == webhook_id
    assert r.keys("dead_letter:webhook:*") == []


def test_two_concurrent_replays_enqueue_once(api, receiver, start_worker, admin_headers, r, settings):
    receiver.script("/once", Reply(400))
    worker = start_worker()
    webhook_id = submit(api, receiver, "/once")
    assert settled(api, webhook_id)["status"] == "failed"
    # No worker while the replays race, so what they enqueue stays on the broker to be counted.
    worker.stop()
    queue = f"{settings.broker_key_prefix}{settings.delivery_queue_name}"
    unacked = f"{settings.broker_key_prefix}unacked"
    assert (r.llen(queue), r.hlen(unacked)) == (0, 0)
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def replay():
        barrier.wait()
        codes.append(api.post(f"/dead-letters/{webhook_id}/replay", headers=admin_headers).status_code)

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count(202) == 1, codes
    assert all(c in (202, 404, 409) for c in codes)
    assert r.llen(queue) == 1  # every replay has answered: exactly one message was enqueued
    start_worker()
    settled(api, webhook_id, want=("delivered",))
    wait_until(lambda: (r.llen(queue), r.hlen(unacked)) == (0, 0), timeout=30,
               message="the replayed message was never acked")
    assert len(receiver.received("/once")) == 2  # the original 400 and exactly one replay


def test_bulk_replay_filters_and_dry_run(api, receiver, start_worker, admin_headers):
    receiver.script("/a", Reply(400), Reply(400))
    receiver.script("/b", Reply(410))
    start_worker()
    ids = [submit(api, receiver, "/a"), submit(api, receiver, "/a"), submit(api, receiver, "/b")]
    for webhook_id in ids:
        assert settled(api, webhook_id)["status"] == "failed"
    dry = api.post("/dead-letters/replay", json={"destination": receiver.url("/a"), "dry_run": True},
                   headers=admin_headers).json()
    assert dry == {"matched": 2, "replayed": 0, "skipped": 0, "failed": 0, "dry_run": True}
    assert api.post("/dead-letters/replay", json={"error_type": "http_4xx", "newer_than_seconds": -1},
                    headers=admin_headers).status_code == 422
    assert api.post("/dead-letters/replay", json={"limit": 0}, headers=admin_headers).status_code == 422
    done = api.post("/dead-letters/replay", json={"destination": receiver.url("/a"), "limit": 1},
                    headers=admin_headers).json()
    assert done["replayed"] == 1
    remaining = api.get("/dead-letters", headers=admin_headers).json()
    assert remaining["total"] == 2


def test_breaker_defers_without_using_attempts_then_delivers(api, receiver, start_worker, r, settings,
                                                             admin_headers):
    breakers = BreakerStore(r, threshold=settings.breaker_failure_threshold,
                            reset_timeout=settings.breaker_reset_timeout, probe_lease=5)
    origin = f"http://127.0.0.1:{receiver.port}"
    start_worker()  # first: a slow start must not eat into the open window measured below
    for _ in range(settings.breaker_failure_threshold):
        breakers.record(origin, "failure", was_probe=False)
    opened = time.time()
    assert breakers.get(origin).state == "open"
    webhook_id = submit(api, receiver, "/deferred")
    deferred = wait_until(lambda: (s := status_of(api, webhook_id))["status"] == "retrying" and s)
    assert deferred["attempts"] == 0 and deferred["last_error_type"] == "circuit_open"
    record = settled(api, webhook_id, want=("delivered",))
    (request,) = receiver.received("/deferred")
    assert request.at >= opened + settings.breaker_reset_timeout - 0.5  # nothing sent while open
    assert record["attempts"] == 1  # deferrals used no attempt
    assert breakers.get(origin).state == "closed"
    listed = api.get("/circuit-breakers", headers=admin_headers).json()["items"]
    assert [b["state"] for b in listed if b["destination"] == origin] == ["closed"]


def test_bounded_deferral_ends_in_dlq_as_circuit_open(api, receiver, start_worker, r, settings, admin_headers):
    start_worker(extra_env={"COMPLIANCE_BREAKER_MAX_DEFERRAL_SECONDS": "0.5"})
    # Opened once the worker is up (its start on a loaded machine can outlast the open period,
    # and then the first attempt is the probe): the next probe is far more than 0.5 s away.
    breakers = BreakerStore(r, threshold=1, reset_timeout=settings.breaker_reset_timeout, probe_lease=5)
    origin = f"http://127.0.0.1:{receiver.port}"
    breakers.record(origin, "failure", was_probe=False)
    webhook_id = submit(api, receiver)
    assert settled(api, webhook_id)["status"] == "failed"
    entry = api.get(f"/dead-letters/{webhook_id}", headers=admin_headers).json()
    assert entry["error_type"] == "circuit_open"
    assert receiver.received() == []


def test_breaker_opens_across_two_workers_and_probes_once(api, receiver, start_worker, r, settings, admin_headers):
    receiver.default = Reply(500)
    # Each first attempt is held 1 s: one worker (2 in flight) cannot take all six before the
    # other has polled, so both take part in the failures that open the breaker. (Answered at
    # once, a fast worker could fail all five alone on a busy machine.)
    for i in range(6):
        receiver.script(f"/p{i}", Reply(500, delay=1.0))
    first = start_worker(concurrency=2, name="a")
    second = start_worker(concurrency=2, name="b")
    origin = f"http://127.0.0.1:{receiver.port}"
    ids = [submit(api, receiver, f"/p{i}") for i in range(6)]
    wait_until(lambda: r.hget(f"compliance:breaker:{origin}", "state") == "open", timeout=60)
    assert int(r.hget(f"compliance:breaker:{origin}", "failures")) == 5
    # both worker processes took part in the failures that opened it
    assert "retry scheduled" in first.log() and "retry scheduled" in second.log()
    received_at_open = len(receiver.received())
    assert received_at_open >= 5
    opened_at = float(r.hget(f"compliance:breaker:{origin}", "opened_at"))
    # wait for the first probe window, then count requests in it: exactly one probe
    wait_until(lambda: r.hget(f"compliance:breaker:{origin}", "times_opened") == "2", timeout=60)
    reopened_at = float(r.hget(f"compliance:breaker:{origin}", "opened_at"))
    # by arrival time: the attempts still held by the receiver when it opened are not sent in it
    in_window = [q for q in receiver.arrived() if opened_at + 0.2 < q.at < reopened_at + 0.2]
    assert len(in_window) == 1, [q.path for q in in_window]
    # recovery: the next probe succeeds and the deferred webhooks are delivered
    receiver.default = Reply(200)
    for webhook_id in ids:
        record = settled(api, webhook_id, timeout=90)
        assert record["attempts"] <= 4
    metrics = api.get("/metrics").text
    # closed again: counted, no longer exported per destination
    assert f'circuit_breaker_state{{destination="{origin}"}}' not in metrics
    assert 'circuit_breakers{state="closed"} 1.0' in metrics
    # reset by hand works and needs the admin key
    assert api.post(f"/circuit-breakers/{origin}/reset").status_code == 403
    assert api.post(f"/circuit-breakers/{origin}/reset", headers=admin_headers).status_code == 200


def test_unsafe_url_at_delivery_time_is_dead_lettered_as_validation(api, receiver, start_worker, env, admin_headers):
    # accepted while loopback was allowed, delivered by a worker that refuses it
    start_worker(extra_env={"COMPLIANCE_ALLOW_LOOPBACK_TARGETS": "false"})
    webhook_id = submit(api, receiver)
    assert settled(api, webhook_id)["status"] == "failed"
    entry = api.get(f"/dead-letters/{webhook_id}", headers=admin_headers).json()
    assert entry["error_type"] == "validation" and "loopback" in entry["error"]
    assert receiver.received() == []


def test_rotation_two_secrets_both_verify(api, receiver, start_worker):
    start_worker(extra_env={"COMPLIANCE_WEBHOOK_SECRETS": f"{SECRET_2},{SECRET}"})
    submit(api, receiver)
    (request,) = receiver.wait_for(1)
    Webhook(SECRET).verify(request.body.decode(), request.headers)
    Webhook(SECRET_2).verify(request.body.decode(), request.headers)
