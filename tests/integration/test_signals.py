"""Delivery signals are built by hand (one LPUSH in the record's transaction): they must be the
very message Celery's own ``send_task`` publishes, and a real Celery worker must run them."""

from __future__ import annotations

import json

import pytest

from compliance.delivery.dispatch import signal_message
from compliance.delivery.models import Envelope
from compliance.messaging import DELIVER_TASK
from compliance.wiring import Container
from tests.support.receiver import Reply
from tests.support.services import wait_until

pytestmark = pytest.mark.timeout(120)
# Fresh per message (ids) or per process (where it came from, where replies would go).
PER_MESSAGE = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"),
               ("properties", "correlation_id"), ("properties", "delivery_tag"),
               ("properties", "reply_to")}


def _flatten(message: dict[str, object]) -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {}
    for key, value in message.items():
        if isinstance(value, dict) and key in ("headers", "properties"):
            out.update({(key, k): v for k, v in value.items()})
        else:
            out[(key, "")] = value
    return out


def test_a_hand_built_signal_is_the_message_send_task_publishes(settings, r):
    container = Container(settings)
    queue, key = settings.delivery_queue_name, settings.delivery_queue_key
    container.celery.send_task(DELIVER_TASK, args=["wh_same"], queue=queue,
                               argsrepr="<webhook wh_same>", kwargsrepr="{}",
                               headers={"webhook_id": "wh_same"})
    celery_made = json.loads(r.rpop(key))
    ours = json.loads(signal_message("wh_same", queue=queue, origin="gen1@host", reply_to="r"))
    theirs, mine = _flatten(celery_made), _flatten(ours)
    assert set(theirs) == set(mine)
    differ = {k for k in theirs if theirs[k] != mine[k]}
    assert differ <= PER_MESSAGE, {k: (theirs[k], mine[k]) for k in differ - PER_MESSAGE}
    assert mine[("headers", "root_id")] == mine[("headers", "id")]
    assert mine[("properties", "correlation_id")] == mine[("headers", "id")]
    container.close()


def test_a_signal_pushed_with_its_record_is_run_by_a_celery_worker_thread(
        settings, receiver, start_worker, r):
    """With the threads engine only Celery's consumer reads the queue: the hand-built message
    goes through kombu's BRPOP, Celery's protocol and the delivery task."""
    receiver.default = Reply(200)
    container = Container(settings)
    ids = [f"wh_signal_{i}" for i in range(5)]
    for webhook_id in ids:
        container.submitter.submit(Envelope(webhook_id=webhook_id, url=receiver.url(), event="e",
                                            payload={"i": webhook_id}))
    assert r.llen(settings.delivery_queue_key) == len(ids)  # record and signal, one transaction
    start_worker(kind="deliveries", concurrency=4, extra_env={
        "COMPLIANCE_DELIVERY_ENGINE": "threads", "COMPLIANCE_DELIVERY_CONCURRENCY": "4"})
    wait_until(lambda: len(receiver.received()) >= len(ids), timeout=60)
    assert sorted(q.headers["webhook-id"] for q in receiver.received()) == sorted(ids)
    container.close()


def test_a_signal_handed_to_the_engine_makes_its_webhook_due_unless_it_is_not_free(settings, r):
    """A worker's Celery thread hands the webhooks it pops to the delivery engine beside it: on
    the engine's own list, still leased (so in flight, for the operator). A duplicate signal
    (settled, held, scheduled later) is dropped."""
    container = Container(settings)
    for webhook_id in ("free", "held", "later", "done"):
        container.submitter.submit(Envelope(webhook_id=webhook_id, url="http://127.0.0.1:9/h",
                                            event="e", payload={}))
    now = container.clock()
    container.schedule.claim("held", now=now, lease_until=now + 60)
    r.zadd("compliance:schedule:due", {"later": now + 600})
    r.zrem("compliance:schedule:leased", "later")
    r.delete("compliance:webhook:done")  # delivered: its envelope is gone
    runner = container.runner
    assert runner.hand_over("free").value == "handed_over"
    assert r.lrange("compliance:schedule:handed", 0, -1) == ["free"]
    assert r.zscore("compliance:schedule:leased", "free") is not None  # still signalled work
    assert [runner.hand_over(i).value for i in ("held", "later", "done")] == ["duplicate"] * 3
    assert r.lrange("compliance:schedule:handed", 0, -1) == ["free"]
    assert r.zscore("compliance:schedule:due", "later") == pytest.approx(now + 600)
    container.close()


@pytest.mark.asyncio
async def test_the_engine_takes_what_was_handed_to_it_first(settings, r):
    import redis.asyncio

    container = Container(settings)
    for webhook_id in ("queued", "handed"):
        container.submitter.submit(Envelope(webhook_id=webhook_id, url="http://127.0.0.1:9/h",
                                            event="e", payload={}))
    assert container.runner.hand_over("handed").value == "handed_over"
    aclient = redis.asyncio.Redis.from_url(settings.redis_url, decode_responses=True)
    now = container.clock()
    try:
        taken = await container.schedule.take(aclient, count=1, now=now, lease_until=now + 60,
                                              signal_until=now + 300)
    finally:
        await aclient.aclose()
    assert [(i, c.state.value) for i, c in taken] == [("handed", "claimed")]
    assert r.llen("compliance:schedule:handed") == 0
    container.close()
