"""Never lose an accepted webhook: kill, freeze and starve every process at each step.

Real Redis, real worker processes, a real receiver. Each test reconciles every accepted id at
the end (delivered or dead-lettered), and prints the figures the closing notes quote.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.localredis import LocalRedis
from tests.support.receiver import Reply
from tests.support.services import PRODUCER_KEY, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(300)

# Leases shortened together: a lost signal is noticed after 3 s, a dead worker's lease after
# 10 s (task limit 5 s + 5), and the sweeper looks five times a second.
DURABLE = {
    "COMPLIANCE_DELIVERY_SIGNAL_TIMEOUT": "3",
    "COMPLIANCE_DELIVERY_SWEEP_INTERVAL": "0.2",
    "COMPLIANCE_DELIVERY_TASK_TIME_LIMIT": "5",
}
QUEUE = "compliance-compliance_webhooks"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, **DURABLE}


def submit(api: TestClient, url: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = api.post("/webhooks", json={"url": url, "event": "e", "payload": {"i": i}})
        assert response.status_code == 202, response.text
        ids.append(response.json()["webhook_id"])
    return ids


def settled(api: TestClient, ids: list[str]) -> bool:
    return all(api.get(f"/webhook-statuses/{i}").json().get("status") in ("delivered", "failed")
               for i in ids)


def reconcile(api: TestClient, receiver, ids: list[str], label: str, started: float) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every accepted id is delivered (and arrived) or dead-lettered; figures for the notes."""
    final = {i: api.get(f"/webhook-statuses/{i}").json().get("status") for i in ids}
    sent = collections.Counter(q.headers["webhook-id"] for q in receiver.received())
    lost = [i for i in ids
            if not ((final[i] == "delivered" and sent[i] > 0) or final[i] == "failed")]
    statuses = collections.Counter(final.values())
    figures = {"accepted": len(ids), "delivered": statuses["delivered"],
               "dead_lettered": statuses["failed"], "lost": len(lost),
               "duplicates": sum(sent[i] - 1 for i in ids if sent[i] > 1),
               "seconds_to_settle": round(time.monotonic() - started, 1)}
    print(f"{label}: {figures}")
    assert not lost, f"{label}: accepted webhooks never delivered: {lost}"
    return figures


def blocked_clients(r: redis.Redis) -> int:
    return int(r.info("clients")["blocked_clients"])


def test_idle_workers_frozen_then_killed_lose_nothing(api, receiver, start_worker, r):
    """kombu pops a message (BRPOP) before it records it as unacked: a worker frozen with a
    BRPOP waiting takes messages it will never run. The record's signal lease brings them back."""
    receiver.default = Reply(200)
    ids: list[str] = []
    popped_by_frozen = 0
    for cycle in range(3):
        workers = [start_worker(kind="deliveries", concurrency=2, name=f"frozen{cycle}-{i}")
                   for i in range(2)]
        wait_until(lambda: blocked_clients(r) >= 2, timeout=20,
                   message="idle workers did not block in BRPOP")
        for worker in workers:
            worker.signal(signal.SIGSTOP)
        before = r.llen(QUEUE)
        batch = submit(api, receiver.url(), 4)
        ids += batch
        # What the frozen BRPOPs took is in no list and no hash now.
        popped_by_frozen += before + len(batch) - r.llen(QUEUE)
        for worker in workers:
            worker.signal(signal.SIGKILL)
            worker.wait(10)
    assert popped_by_frozen >= 1, "the frozen workers took no message: the fault was not exercised"
    assert r.hlen("compliance-unacked") == 0  # nowhere the broker could restore them from
    started = time.monotonic()
    rescuer = start_worker(kind="deliveries", concurrency=4, name="rescuer")
    wait_until(lambda: settled(api, ids), timeout=60, interval=0.2,
               message="webhooks taken by the killed workers were never delivered")
    figures = reconcile(api, receiver, ids, "sigstop+sigkill x3", started)
    assert figures["delivered"] == len(ids)
    assert b"recovered after their lease lapsed" in rescuer.log_path.read_bytes()
    print(f"sigstop+sigkill: {popped_by_frozen} signals taken by frozen workers and recovered")


def test_sigkill_under_steady_load_loses_nothing(api, receiver, start_worker):
    """Workers (and the sweepers in them) killed again and again while webhooks arrive."""
    receiver.default = Reply(200, delay=0.05)
    ids: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        # Until every kill is done (the cap only bounds a run gone wrong): a producer that had
        # stopped at a fixed count left a late round, on a slow machine, with nothing to deliver.
        while not stop.is_set() and len(ids) < 3000:
            ids.extend(submit(api, receiver.url(), 5))
            stop.wait(0.1)

    steady = start_worker(kind="deliveries", concurrency=8, name="steady")
    producer = threading.Thread(target=produce)
    producer.start()
    kills = 0
    try:
        for round_ in range(3):
            victim = start_worker(kind="deliveries", concurrency=8, name=f"victim{round_}")
            count = len(receiver.received())
            wait_until(lambda: len(receiver.received()) >= count + 20, timeout=30,
                       message="no deliveries under load")
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            kills += 1
        # the last sweeper-carrying process goes too, while work is in flight
        steady.signal(signal.SIGKILL)
        steady.wait(10)
        kills += 1
    finally:
        stop.set()
        producer.join()
    started = time.monotonic()
    start_worker(kind="deliveries", concurrency=8, name="after")
    wait_until(lambda: settled(api, ids), timeout=120, interval=0.5,
               message="accepted webhooks were lost to SIGKILL")
    figures = reconcile(api, receiver, ids, f"sigkill x{kills} under load", started)
    assert figures["delivered"] == len(ids)


def test_a_webhook_delivered_just_before_its_lease_lapses_is_not_sent_again(settings, r):
    """The sweeper recovers only live records: a delivered one has none left to recover."""
    from compliance.delivery.models import Envelope
    from compliance.store.schedule import ClaimState
    from compliance.wiring import Container

    now = [1_000.0]
    container = Container(settings, clock=lambda: now[0])
    env = Envelope(webhook_id="wh_lease_edge", url="https://example.com/h", event="e", payload={})
    container.ledger.accept(env, now[0])
    claim = container.schedule.claim(env.webhook_id, now=now[0],
                                     lease_until=now[0] + settings.delivery_lease_seconds)
    assert claim.state is ClaimState.CLAIMED
    now[0] += settings.delivery_lease_seconds - 0.01  # the attempt ends a hair before the lease
    container.ledger.delivered(env, now[0])
    now[0] += 1.0  # the lease would have lapsed by now
    swept = container.schedule.sweep(now=now[0], signal_until=now[0] + 3, limit=100)
    assert swept.ids == []
    # and a late duplicate signal is dropped at the claim
    assert container.schedule.claim(env.webhook_id, now=now[0], lease_until=now[0] + 10).state in (
        ClaimState.MISSING, ClaimState.SETTLED)
    assert r.exists("compliance:webhook:wh_lease_edge") == 0  # nothing outlives the delivery
    container.close()


def test_the_schedule_refuses_duplicates_and_recovers_lapsed_leases(settings, r):
    from compliance.delivery.models import Envelope
    from compliance.store.schedule import ClaimState
    from compliance.wiring import Container

    now = 5_000.0
    container = Container(settings)
    schedule, ledger = container.schedule, container.ledger
    env = Envelope(webhook_id="wh_sched", url="https://example.com/h", event="e", payload={})
    ledger.accept(env, now)
    assert schedule.sweep(now=now, signal_until=now + 3, limit=10).ids == []  # signal fresh
    first = schedule.claim("wh_sched", now=now, lease_until=now + 10)
    assert first.state is ClaimState.CLAIMED and first.runs == 1
    assert schedule.claim("wh_sched", now=now + 1, lease_until=now + 11).state is ClaimState.BUSY
    swept = schedule.sweep(now=now + 11, signal_until=now + 14, limit=10)  # holder died
    assert swept.ids == ["wh_sched"] and swept.recovered == 1
    second = schedule.claim("wh_sched", now=now + 12, lease_until=now + 22)
    assert second.state is ClaimState.CLAIMED and second.runs == 2  # counts toward poison
    ledger.reschedule(env, now + 12, due_at=now + 30, error=("http_5xx", "HTTP 503"))
    assert schedule.claim("wh_sched", now=now + 13, lease_until=now + 23).state is ClaimState.NOT_DUE
    assert schedule.sweep(now=now + 29, signal_until=now + 32, limit=10).ids == []
    swept = schedule.sweep(now=now + 30, signal_until=now + 33, limit=10)
    assert swept.ids == ["wh_sched"] and swept.due == 1
    third = schedule.claim("wh_sched", now=now + 31, lease_until=now + 41)
    assert third.state is ClaimState.CLAIMED and third.runs == 1  # an attempt resets the count
    # every per-webhook key lives no longer than its status record
    assert 0 < r.ttl("compliance:webhook:wh_sched") <= r.ttl("webhook_status:wh_sched")
    container.close()


def _own_redis(tmp_path: Path) -> LocalRedis:
    return LocalRedis(data_dir=tmp_path / "own-redis").start()


def test_redis_sigkill_and_restart_with_aof_workers_keep_running(tmp_path, env, receiver, start_worker):
    """Redis killed with SIGKILL and started again on its AOF: the workers ride it out (same
    PIDs) and deliver what was accepted before and after."""
    server = _own_redis(tmp_path)
    own_env = {**env, "COMPLIANCE_REDIS_URL": server.url}
    settings = settings_from_env(own_env)
    receiver.default = Reply(200)
    try:
        worker = start_worker(kind="deliveries", concurrency=4, extra_env=own_env, name="rides")
        pid = worker.pid
        with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
            before = submit(api, receiver.url(), 10)
            wait_until(lambda: settled(api, before), timeout=30)
            receiver.default = Reply(200, delay=1.5)
            before += submit(api, receiver.url(), 10)  # in flight (unacked) when Redis dies
            wait_until(receiver.in_flight, timeout=30)
            # appendfsync everysec: what Redis acknowledged more than a second ago is on disk.
            # This wait is the fault model (the loss window we document), not a synchronisation.
            time.sleep(1.1)
            started = time.monotonic()
            seen = len(worker.log_path.read_bytes())
            server.kill()
            # Redis stays down until the worker has noticed (its consumer logs the lost link).
            wait_until(lambda: b"onnect" in worker.log_path.read_bytes()[seen:], timeout=30,
                       message="the worker never noticed Redis was gone")
            server.start()
            after = wait_until(lambda: _try_submit(api, receiver.url(), 10), timeout=30)
            wait_until(lambda: settled(api, before + after), timeout=90, interval=0.5,
                       message="webhooks were not delivered after the Redis restart")
            figures = reconcile(api, receiver, before + after, "redis sigkill+restart", started)
            assert figures["delivered"] == 30
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        assert worker.pid == pid
    finally:
        server.stop()


def _try_submit(api: TestClient, url: str, n: int) -> list[str] | None:
    try:
        return submit(api, url, n)
    except AssertionError:
        return None


def test_redis_full_then_freed_workers_keep_running_and_drain(tmp_path, env, receiver, start_worker):
    """At maxmemory (noeviction) writes fail: the API sheds with 503, workers wait, and once
    memory frees they drain the backlog without a restart."""
    server = _own_redis(tmp_path)
    own_env = {**env, "COMPLIANCE_REDIS_URL": server.url}
    settings = settings_from_env(own_env)
    client = redis.Redis.from_url(server.url, decode_responses=True, retry=None)
    # a slow receiver: the worker's commits come after Redis is full, however fast it takes them
    receiver.default = Reply(200, delay=1.0)
    try:
        worker = start_worker(kind="deliveries", concurrency=4, extra_env=own_env, name="starved")
        pid = worker.pid
        with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
            ids = submit(api, receiver.url(), 40)
            # full now, and stays full whatever the worker frees: every write that grows fails
            client.config_set("maxmemory", "1")
            refused = api.post("/webhooks", json={"url": receiver.url(), "event": "e", "payload": {}})
            assert refused.status_code == 503, refused.text
            wait_until(lambda: b"OOM" in worker.log_path.read_bytes()
                       or b"OutOfMemory" in worker.log_path.read_bytes(), timeout=30,
                       message="the worker never met the full Redis")
            started = time.monotonic()
            client.config_set("maxmemory", "0")
            wait_until(lambda: settled(api, ids), timeout=120, interval=0.5,
                       message="the backlog was not drained after memory freed")
            figures = reconcile(api, receiver, ids, "redis maxmemory then freed", started)
            assert figures["delivered"] == len(ids)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        assert worker.pid == pid
    finally:
        client.close()
        server.stop()


def test_a_long_backlog_is_not_signalled_twice_but_a_lost_signal_is(settings, r):
    """A signal still waiting behind others is left alone when its lease lapses; one that cannot
    be waiting (a later signal was already claimed, or the queue is empty) is sent again."""
    from compliance.delivery.models import Envelope
    from compliance.store.schedule import ClaimState
    from compliance.wiring import Container

    container = Container(settings)
    schedule, ledger = container.schedule, container.ledger
    t = 10_000.0
    for n, webhook_id in enumerate(["wh_old", "wh_new", "wh_waiting"]):
        ledger.accept(Envelope(webhook_id=webhook_id, url="https://example.com/h", event="e",
                               payload={}), t + n)
        r.lpush(settings.delivery_queue_key, webhook_id)  # stand-ins for the queued signals
    lapsed = t + 2 + settings.delivery_signal_timeout + 1
    assert schedule.sweep(now=lapsed, signal_until=lapsed + 3, limit=10).ids == []  # all queued
    # wh_old's signal was lost; wh_new's (sent later) is claimed: wh_old cannot still be queued
    r.rpop(settings.delivery_queue_key)
    r.rpop(settings.delivery_queue_key)
    assert schedule.claim("wh_new", now=lapsed, lease_until=lapsed + 10).state is ClaimState.CLAIMED
    again = lapsed + settings.delivery_signal_timeout + 4
    swept = schedule.sweep(now=again, signal_until=again + 3, limit=10)
    assert swept.ids == ["wh_old"] and swept.recovered == 1
    # wh_waiting (sent after wh_new) may still sit in the queue: not signalled until it drains
    r.rpop(settings.delivery_queue_key)
    later = again + settings.delivery_signal_timeout + 4
    assert "wh_waiting" in schedule.sweep(now=later, signal_until=later + 3, limit=10).ids
    container.close()


def test_a_report_task_the_broker_lost_is_sent_again(api, receiver, start_worker, r):
    """kombu's pop-before-record gap loses report tasks too: the report's lease brings the task
    back, the report is generated once, and its webhook is delivered."""
    from tests.reports.test_api import good

    accepted = api.post("/reports", json=good(webhook_url=receiver.url()))
    assert accepted.status_code == 202, accepted.text
    report_id = accepted.json()["report_id"]
    # A worker frozen with a BRPOP waiting took the message: no list and no hash holds it.
    assert r.rpop("compliance-compliance_queue") is not None
    assert r.llen("compliance-compliance_queue") == 0 and r.hlen("compliance-unacked") == 0
    start_worker(kind="all", concurrency=4, name="reporter")
    report = wait_until(lambda: (body := api.get(f"/reports/{report_id}").json())["status"]
                        == "completed" and body, timeout=90, interval=0.5,
                        message="the lost report task was never sent again")
    delivered = receiver.wait_for(1, timeout=30)
    assert [q.headers["webhook-id"] for q in delivered] == [report["webhook_id"]]
    assert r.zscore("compliance:schedule:reports", report_id) is None  # settled: no lease left
