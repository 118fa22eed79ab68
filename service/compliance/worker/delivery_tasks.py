"""Celery task for webhook delivery: a signal names a webhook; the record says what to do."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task
from pydantic import ValidationError

from compliance.delivery.models import Envelope
from compliance.delivery.runner import RunOutcome
from compliance.messaging import DELIVER_TASK
from compliance.observability import metrics
from compliance.wiring import process_container
from compliance.worker.signals import running_engine

log = logging.getLogger(__name__)


@shared_task(name=DELIVER_TASK, bind=True, ignore_result=True)
def deliver_webhook(self: Task, signal: str | dict[str, Any]) -> None:
    """Claim the webhook ``signal`` names, attempt it once, record the next step (or, where a
    delivery engine runs in this process, make the webhook due for it).

    Nothing here needs the message to survive: the webhook's record and lease are in Redis, so a
    failure of any kind is logged and the message acked; the sweeper signals the webhook again
    when its lease lapses (or when its retry is due).
    """
    started = time.monotonic()
    container = process_container(self.app.settings)  # type: ignore[attr-defined]
    try:
        webhook_id = _webhook_id(container, signal)
        if webhook_id is None:
            metrics.TASKS.labels(task="deliver_webhook", state="malformed").inc()
            return
        engine = running_engine()
        if engine is not None:
            # This thread is on the queue so that Celery's tools see deliveries; the attempt
            # itself goes to the engine, at a fraction of this path's cost. The task stays
            # active until the engine is done with the webhook: `celery inspect active` shows
            # it at work, and this thread (a costly way to take signals: a round trip each for
            # the pop, the unacked record, the hand-over and the ack) takes the next one only
            # then, leaving the queue to the engine's batched take. (Not in `--kind all`, where
            # this one thread also runs reports.)
            done = engine.watch(webhook_id)
            try:
                state = container.runner.hand_over(webhook_id)
                if state is RunOutcome.HANDED_OVER:
                    engine.nudge()
                if state is RunOutcome.HANDED_OVER and self.app.conf.get("compliance_hold_handed"):
                    # Another pod's engine may take it from the shared list: then this one
                    # never sees it finish, and the wait ends at its bound.
                    done.wait(container.settings.delivery_lease_seconds)
            finally:
                engine.forget(webhook_id)
        else:
            state = container.runner.run(webhook_id)
    except Exception:
        metrics.TASKS.labels(task="deliver_webhook", state="error").inc()
        log.exception("delivery task failed; the webhook's lease brings it back")
        return
    metrics.TASKS.labels(task="deliver_webhook", state=state.value).inc()
    metrics.TASK_DURATION.labels(task="deliver_webhook").observe(time.monotonic() - started)


def _webhook_id(container: Any, signal: object) -> str | None:
    if isinstance(signal, str) and 0 < len(signal) <= 200:
        return signal
    if isinstance(signal, dict):
        # A message from before durable delivery carried the whole envelope: adopt it.
        try:
            env = Envelope.model_validate(signal)
        except ValidationError as exc:
            _malformed(signal.get("webhook_id"), exc.errors(include_url=False, include_input=False))
            return None
        container.runner.adopt(env)
        return env.webhook_id
    _malformed(None, f"unexpected argument of type {type(signal).__name__}")
    return None


def _malformed(webhook_id: object, errors: object) -> None:
    # Not a message this service can read (hand-made, or from an incompatible version): no
    # retry can deliver it, so it is logged loudly and acked rather than looped.
    log.error("malformed delivery message dropped", extra={
        "webhook_id": webhook_id if isinstance(webhook_id, str) else None, "errors": errors})
