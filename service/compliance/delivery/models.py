"""The envelope of a webhook (kept in Redis from the 202 on) and its mapping to records."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from compliance.store.records import Attempt, DeadLetter, Status, WebhookStatus


class Envelope(BaseModel):
    """Everything a delivery needs; each attempt carries it forward with the history so far."""

    webhook_id: str
    url: str
    event: str
    payload: dict[str, Any]
    correlation_id: str | None = None
    report_id: str | None = None
    # The submitting tenant (None: the default tenant); signing and isolation follow it.
    tenant: str | None = None
    created_at: float = Field(default_factory=time.time)
    attempts: int = 0
    # Seconds spent deferred by open breakers before the last attempt, and since when it has
    # been deferred now (None while it is not).
    deferred_seconds: float = 0.0
    deferred_since: float | None = None
    history: list[Attempt] = Field(default_factory=list)
    replay_count: int = 0


# The one mapping between an envelope and the records kept of it: a new field is one edit here.

def status_record(
    env: Envelope, status: Status, now: float, *, error: tuple[str, str] | None = None,
    status_code: int | None = None, next_at: float | None = None,
) -> WebhookStatus:
    """``webhook_status:{id}`` as it stands after ``env``'s latest step."""
    return WebhookStatus(
        webhook_id=env.webhook_id, report_id=env.report_id, destination=env.url,
        event=env.event, status=status, attempts=env.attempts,
        last_error=error[1] if error else None, last_error_type=error[0] if error else None,
        last_status_code=status_code, next_attempt_at=next_at,
        created_at=env.created_at, updated_at=now, correlation_id=env.correlation_id,
        tenant=env.tenant, history=kept_history(env, status),
    )


def kept_history(env: Envelope, status: Status) -> list[Attempt] | None:
    """The attempts a status record keeps: all of them, except for a first-try delivery, which
    keeps none (its one attempt is the record's ``updated_at``; most webhooks are delivered
    first try, and every byte of a record is paid for each of them)."""
    if not env.history or (status is Status.DELIVERED and env.attempts <= 1):
        return None
    return env.history


def dead_letter(
    env: Envelope, *, error_type: str, message: str, headers: dict[str, str], now: float,
    status_code: int | None = None,
) -> DeadLetter:
    """The dead-letter entry of ``env``; the final error closes its history once."""
    history = env.history
    if not history or history[-1].error_type != error_type:
        history = [*history, Attempt(at=now, error_type=error_type, message=message,
                                     status_code=status_code)]
    return DeadLetter(
        webhook_id=env.webhook_id, report_id=env.report_id, destination=env.url,
        event=env.event, payload=env.payload, headers=headers, attempts=history,
        error_type=error_type, error=message, correlation_id=env.correlation_id,
        created_at=env.created_at, failed_at=now, replay_count=env.replay_count,
        tenant=env.tenant,
    )


def envelope_from_dead_letter(entry: DeadLetter) -> Envelope:
    """A replay: same webhook id and payload; attempts, history and deferral start over."""
    return Envelope(
        webhook_id=entry.webhook_id, url=entry.destination, event=entry.event,
        payload=entry.payload, correlation_id=entry.correlation_id, report_id=entry.report_id,
        created_at=entry.created_at, replay_count=entry.replay_count + 1, tenant=entry.tenant,
    )
