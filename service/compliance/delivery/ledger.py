"""Every state change of a webhook, written in one MULTI/EXEC: status record, envelope, schedule,
and dead letter together, so a crash between two writes cannot leave them disagreeing.

Each method either runs its own transaction or, given ``pipe`` (a transactional pipeline, sync or
asyncio), only queues its writes there: the asyncio engine commits many webhooks' steps at once.
A caller's pipeline runs registered scripts by EVALSHA: an asyncio one must load ``scripts`` (the
schedule's, the breakers' and this ledger's) before it executes, as the engine does on every
flush (a sync one loads them itself); a script missing at EXEC would leave that step undone while
the transaction's other writes commit.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import redis
from pydantic import ValidationError

from compliance.delivery import ssrf
from compliance.delivery.fairshare import TenantLimits
from compliance.delivery.models import Envelope, dead_letter, status_record
from compliance.settings import Settings
from compliance.store import audit
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import DeadLetter, Status
from compliance.store.schedule import Intake, ScheduleStore, Verdict
from compliance.store.statuses import StatusStore

log = logging.getLogger(__name__)


class Ledger:
    """Writes a webhook's transitions atomically across the stores."""

    def __init__(self, *, client: redis.Redis, settings: Settings, statuses: StatusStore,
                 dead_letters: DeadLetterStore, schedule: ScheduleStore,
                 audit_store: audit.AuditStore | None = None) -> None:
        self._r = client
        self._audit = audit_store
        # Audit entries of a caller's pipeline, collected between open_batch and close_batch.
        self._batches: weakref.WeakKeyDictionary[Any, list[audit.AuditEvent]] = (
            weakref.WeakKeyDictionary())
        self._s = settings
        self._statuses = statuses
        self._dlq = dead_letters
        self._schedule = schedule

    def accept(self, env: Envelope, now: float, *, signal: str | None = None,
               limits: TenantLimits | None = None) -> Verdict:
        """``pending`` with its envelope, a signal lease and (given) its signal, in one script:
        from here on it cannot be lost. Refused only past ``env``'s tenant's ``limits``."""
        return self._schedule.accept(self._intake(env, now, signal=signal, most_queued=0,
                                                  limits=limits))

    async def accept_async(self, aclient: Any, env: Envelope, now: float, *, signal: str,
                           most_queued: int, limits: TenantLimits | None = None) -> Verdict:
        """``accept`` on an asyncio client, refused (nothing written) when the delivery queue
        already holds ``most_queued`` signals or ``env``'s tenant is past its ``limits``."""
        return await self._schedule.accept_async(
            aclient, self._intake(env, now, signal=signal, most_queued=most_queued,
                                  limits=limits))

    def _intake(self, env: Envelope, now: float, *, signal: str | None, most_queued: int,
                limits: TenantLimits | None = None) -> Intake:
        record = status_record(env, Status.PENDING, now)
        limits = limits or TenantLimits()
        return Intake(webhook_id=env.webhook_id, envelope=env.model_dump_json(),
                      record=self._statuses.serialise(record), score=record.updated_at,
                      status_ttl=self._s.ttl_for_status(Status.PENDING),
                      ttl=self._s.status_ttl_open, now=now,
                      signal_until=now + self._s.delivery_signal_timeout, signal=signal,
                      most_queued=most_queued, tenant=env.tenant,
                      origin=_origin(env.url) if env.tenant else "", cap=limits.cap,
                      rate=limits.rate, burst=limits.burst)

    def delivered(self, env: Envelope, now: float, pipe: Any = None) -> None:
        """``delivered``; the envelope goes (a delivered webhook is never sent again)."""
        own = self._r.pipeline(transaction=True) if pipe is None else pipe
        self._schedule.finish(own, self._statuses.put_call(status_record(env, Status.DELIVERED, now)),
                              env.tenant, loaded=pipe is not None)
        self._outcome(own, env, now, audit.DELIVERED, {"attempts": env.attempts},
                      own=pipe is None)
        if pipe is None:
            own.execute()

    def reschedule(self, env: Envelope, now: float, *, due_at: float,
                   error: tuple[str, str] | None, status_code: int | None = None,
                   reset_runs: bool = True, pipe: Any = None) -> None:
        """``retrying`` until ``due_at``, when the sweeper signals it again."""
        own = self._r.pipeline(transaction=True) if pipe is None else pipe
        self._statuses.put(status_record(env, Status.RETRYING, now, error=error,
                                         status_code=status_code, next_at=due_at), own)
        self._schedule.reschedule(own, env.webhook_id, env.model_dump_json(),
                                  ttl=self._s.status_ttl_open, due_at=due_at,
                                  reset_runs=reset_runs)
        if pipe is None:
            own.execute()

    def park(self, env: Envelope, now: float, *, destination: str, until: float,
             error: tuple[str, str], pipe: Any = None) -> None:
        """``retrying``, parked until ``destination`` takes requests again (about ``until``)."""
        own = self._r.pipeline(transaction=True) if pipe is None else pipe
        self._statuses.put(status_record(env, Status.RETRYING, now, error=error, next_at=until),
                           own)
        # The sweeper looks by the time it may have waited too long (then it is made due again).
        look_at = min(until, now + self._s.breaker_max_deferral_seconds)
        self._schedule.park(own, env.webhook_id, env.model_dump_json(), destination=destination,
                            ttl=self._s.status_ttl_open, now=now, look_at=look_at)
        if pipe is None:
            own.execute()

    def dead_letter(self, env: Envelope, now: float, *, error_type: str, message: str,
                    headers: dict[str, str], status_code: int | None = None,
                    pipe: Any = None) -> DeadLetter:
        """``failed`` with its dead letter. An entry that cannot be serialised as it is (say, a
        payload string with no UTF-8 form) is kept without its payload, and says so: a terminal
        step must not fail, or the webhook would loop."""
        entry = dead_letter(env, error_type=error_type, message=message, headers=headers,
                            now=now, status_code=status_code)
        try:
            entry.model_dump_json()
        except (ValueError, ValidationError) as exc:
            log.error("dead letter kept without its payload", extra={
                "webhook_id": env.webhook_id, "error": f"{type(exc).__name__}"})
            entry = entry.model_copy(update={
                "payload": {}, "error": f"{message} (payload not kept: it cannot be serialised)"})
        own = self._r.pipeline(transaction=True) if pipe is None else pipe
        self._dlq.put(entry, own)
        self._schedule.finish(own, self._statuses.put_call(status_record(
            env, Status.FAILED, now, error=(error_type, message), status_code=status_code)),
            env.tenant, loaded=pipe is not None)
        self._outcome(own, env, now, audit.FAILED,
                      {"attempts": env.attempts, "error_type": str(error_type)},
                      own=pipe is None)
        if pipe is None:
            own.execute()
        return entry

    def open_batch(self, pipe: Any) -> None:
        """Collect the audit entries of the outcomes written on ``pipe`` (the delivery engine's
        batch) until ``close_batch``, which appends them all in one script call. Without it,
        each outcome on a caller's pipeline appends on its own (still no round trip of its
        own)."""
        if self._audit is not None:
            self._batches[pipe] = []

    def close_batch(self, pipe: Any) -> None:
        """Queue the append of what ``pipe`` collected, after its other writes (the pipeline
        must load ``scripts`` before it runs)."""
        events = self._batches.pop(pipe, None)
        if events and self._audit is not None:
            self._audit.append_on(pipe, events)

    def _outcome(self, pipe: Any, env: Envelope, now: float, action: str,
                 detail: dict[str, Any], *, own: bool) -> None:
        """The outcome's audit entry, in the same transaction (no round trip of its own): our
        own transaction sends the script's text; a caller's pipeline collects it for
        ``close_batch`` or, not opened for that, appends it by EVALSHA."""
        if self._audit is None:
            return
        event = audit.AuditEvent(
            actor=audit.SYSTEM_DELIVERY, action=action, at=now, tenant=env.tenant,
            target=env.webhook_id, correlation_id=env.correlation_id, detail=detail)
        batch = None if own else self._batches.get(pipe)
        if batch is not None:
            batch.append(event)
        else:
            self._audit.append_on(pipe, [event], loaded=not own)

    @property
    def scripts(self) -> list[Any]:
        """Lua scripts a caller's pipeline must load before it runs (the audit append)."""
        return self._audit.scripts if self._audit is not None else []


def _origin(url: str) -> str:
    """The breaker name of a URL ('' when it does not parse: it is refused at delivery)."""
    try:
        return ssrf.parse_target(url, https_only=False, allowed_ports=()).origin
    except ssrf.UnsafeURLError:
        return ""
