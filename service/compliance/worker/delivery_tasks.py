"""Celery task for webhook delivery: parse, call the engine, schedule the follow-up."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from asgi_correlation_id import correlation_id
from celery import Task, shared_task
from celery.exceptions import Reject
from pydantic import ValidationError

from compliance.delivery.models import Envelope
from compliance.delivery.policy import ErrorType
from compliance.observability import metrics
from compliance.store import keys
from compliance.worker.app import DELIVER_TASK

if TYPE_CHECKING:
    from compliance.worker.runtime import Runtime

log = logging.getLogger(__name__)
# Pause before handing a failed message back to the broker (it is redelivered at once).
REQUEUE_PAUSE_SECONDS = 1.0


def enqueue(app: Any, env: Envelope, *, queue: str, countdown: float | None = None) -> None:
    """Publish a delivery message; logs show the webhook id, never the payload."""
    app.send_task(
        DELIVER_TASK, args=[env.model_dump(mode="json")], countdown=countdown, queue=queue,
        argsrepr=f"<webhook {env.webhook_id} attempt {env.attempts + 1}>", kwargsrepr="{}",
        headers={"correlation_id": env.correlation_id} if env.correlation_id else None,
    )


@shared_task(name=DELIVER_TASK, bind=True, ignore_result=True)
def deliver_webhook(self: Task, envelope: dict[str, Any]) -> None:
    """Deliver one webhook attempt; retries are new messages with a countdown."""
    from compliance.worker.runtime import get_runtime

    started = time.monotonic()
    try:
        env = Envelope.model_validate(envelope)
    except ValidationError as exc:
        # Not a message this service can read (hand-made, or from an incompatible version): no
        # retry can deliver it, so it is logged loudly and acked rather than looped.
        metrics.TASKS.labels(task="deliver_webhook", state="malformed").inc()
        log.error("malformed delivery message dropped", extra={
            "webhook_id": envelope.get("webhook_id") if isinstance(envelope, dict) else None,
            "errors": exc.errors(include_url=False, include_input=False)})
        return
    if env.correlation_id:
        correlation_id.set(env.correlation_id)
    try:
        state = _deliver(self, get_runtime(self.app.settings), env)
    except Exception as exc:
        # Redis or broker trouble, or a bug. Under acks_late Celery rejects a failed task's
        # message *without* requeue, and kombu's Redis transport then deletes it: the webhook
        # would be lost. Hand it back to the broker instead (if Redis is down even that fails,
        # and the unacked message comes back after the visibility timeout). The run counter
        # dead-letters a message that keeps failing as `poison`, so this cannot loop forever.
        metrics.TASKS.labels(task="deliver_webhook", state="error").inc()
        log.exception("delivery task failed; message requeued", extra={"webhook_id": env.webhook_id})
        time.sleep(REQUEUE_PAUSE_SECONDS)  # a fault that outlives the retry must not spin a hot loop
        raise Reject(exc, requeue=True) from exc
    metrics.TASKS.labels(task="deliver_webhook", state=state).inc()
    metrics.TASK_DURATION.labels(task="deliver_webhook").observe(time.monotonic() - started)


def _deliver(task: Task, rt: Runtime, env: Envelope) -> str:
    """One run of the task; returns its state for the task metric (done, poison, error)."""
    settings = rt.settings
    # Count runs of this logical attempt: the broker redelivers after a crash, and a message
    # that keeps killing workers (or failing inside) must end in the DLQ, not loop forever.
    runs_key = (f"{keys.DELIVERY_RUNS_PREFIX}{env.webhook_id}:{env.replay_count}:"
                f"{env.attempts}:{env.deferred_seconds:.3f}")
    runs = int(rt.redis.incr(runs_key))
    rt.redis.expire(runs_key, settings.broker_visibility_timeout * (settings.max_redeliveries + 1))
    if runs > settings.max_redeliveries:
        rt.deliverer.dead_letter(env, ErrorType.POISON,
                                 f"attempt started {runs} times without finishing")
        return "poison"
    try:
        followup = rt.deliverer.attempt(env)
    except Exception:
        # The engine crashed mid-attempt (Redis hiccup or a bug): run the same attempt again
        # after a pause; the same run counter applies.
        log.exception("delivery attempt crashed; will run again", extra={"webhook_id": env.webhook_id})
        enqueue(task.app, env, queue=settings.delivery_queue_name, countdown=min(60, 2**runs))
        return "error"
    if followup is not None:
        enqueue(task.app, followup.envelope, queue=settings.delivery_queue_name, countdown=followup.delay)
    return "done"
