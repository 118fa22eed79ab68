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
