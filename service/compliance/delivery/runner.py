"""The worker side of durable delivery: take a signalled webhook, attempt it, and sweep.

A signal names a webhook; the record in Redis says what to do. ``DeliveryRunner.run`` claims
the webhook (refusing duplicates and stale signals), attempts it, and the engine records the
next step. ``Sweeper`` signals webhooks that are due, recovers those whose lease lapsed, and lets
go parked webhooks whose destination has a free slot that no finished delivery handed on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from asgi_correlation_id import correlation_id
from pydantic import ValidationError

from compliance.delivery.dispatch import Dispatcher
from compliance.delivery.engine import Deliverer
from compliance.delivery.ledger import Ledger
from compliance.delivery.models import Envelope
from compliance.delivery.policy import ErrorType
from compliance.observability import metrics
from compliance.settings import Settings
from compliance.store.breakers import BreakerStore
from compliance.store.reports import ReportStore
from compliance.store.schedule import ClaimState, ScheduleStore

log = logging.getLogger(__name__)


class RunOutcome(StrEnum):
    """How one run of the delivery task ended (the task metric's state)."""

    DONE = "done"  # an attempt was made and its next step recorded
    DUPLICATE = "duplicate"  # settled, not due, or held elsewhere: the signal is dropped
    MISSING = "missing"  # no live record: expired or deleted
    POISON = "poison"  # claimed too many times without finishing: dead-lettered
    ERROR = "error"  # the attempt crashed: due again shortly, or its lease brings it back
    HANDED_OVER = "handed_over"  # made due for the delivery engine of this process


class DeliveryRunner:
    """Runs the delivery task's body for one signal."""

    def __init__(self, *, settings: Settings, schedule: ScheduleStore, ledger: Ledger,
                 deliverer: Deliverer, clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._schedule = schedule
        self._ledger = ledger
        self._deliverer = deliverer
        self._clock = clock

    def run(self, webhook_id: str) -> RunOutcome:
        """Claim, attempt and record one webhook; Redis errors propagate (the lease covers them)."""
        now = self._clock()
        claim = self._schedule.claim(webhook_id, now=now,
                                     lease_until=now + self._s.delivery_lease_seconds,
                                     signal_timeout=self._s.delivery_signal_timeout)
        if claim.state is ClaimState.MISSING:
            return RunOutcome.MISSING
        if claim.state is not ClaimState.CLAIMED or claim.envelope is None:
            metrics.WEBHOOK_DUPLICATES.inc()
            return RunOutcome.DUPLICATE
        try:
            env = Envelope.model_validate_json(claim.envelope)
        except ValidationError:
            log.error("unreadable envelope; webhook held until its record expires",
                      extra={"webhook_id": webhook_id})
            return RunOutcome.POISON
        if env.correlation_id:
            correlation_id.set(env.correlation_id)
        if claim.runs > self._s.max_redeliveries:
            self._deliverer.dead_letter(env, ErrorType.POISON,
                                        f"attempt started {claim.runs} times without finishing")
            return RunOutcome.POISON
        try:
            self._deliverer.attempt(env)
        except Exception:
            # The engine crashed mid-attempt (a Redis hiccup or a bug). Try again after a pause;
            # the run count is kept, so an attempt that always crashes ends as poison.
            log.exception("delivery attempt crashed; due again shortly",
                          extra={"webhook_id": webhook_id})
            now = self._clock()
            self._ledger.reschedule(env, now, due_at=now + min(60, 2 ** claim.runs),
                                    error=(ErrorType.INTERNAL, "delivery attempt crashed"),
                                    reset_runs=False)
            return RunOutcome.ERROR
        return RunOutcome.DONE

    def hand_over(self, webhook_id: str) -> RunOutcome:
        """Leave the attempt to the process's delivery engine: the webhook is made due now
        (its path costs a fraction of this thread's, per delivery). A settled, held or
        not-yet-due webhook is a duplicate signal, as ``run`` would find."""
        if self._schedule.hand_over(webhook_id, now=self._clock()):
            return RunOutcome.HANDED_OVER
        metrics.WEBHOOK_DUPLICATES.inc()
        return RunOutcome.DUPLICATE

    def adopt(self, env: Envelope) -> None:
        """Take in a message from before durable delivery (it carried the whole envelope)."""
        self._ledger.accept(env, self._clock())


class Sweeper:
    """Signals due webhooks and recovers lapsed leases; any number may run at once."""

    def __init__(self, *, settings: Settings, schedule: ScheduleStore, dispatcher: Dispatcher,
                 reports: ReportStore | None = None, breakers: BreakerStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._schedule = schedule
        self._dispatcher = dispatcher
        self._reports = reports
        self._breakers = breakers
        self._clock = clock
        self.healthy = True
        self.last_turn = time.monotonic()  # read by the worker's liveness check

    def sweep(self) -> int:
        """One sweep; returns how many webhooks were signalled (and report tasks sent again)."""
        now = self._clock()
        total = self._sweep_reports(now)
        if self._breakers is not None:
            # Parked webhooks that no finished delivery let go (a race, or a dead worker's
            # slots lapsing) are made due here.
            self._breakers.sweep_parked(now=now)
        while True:
            swept = self._schedule.sweep(now=now, signal_until=now + self._s.delivery_signal_timeout,
                                         limit=self._s.delivery_sweep_batch)
            if not swept.ids:
                return total
            if swept.recovered:
                metrics.WEBHOOK_RECOVERED.inc(swept.recovered)
                log.warning("webhooks recovered after their lease lapsed (lost signal or dead "
                            "worker)", extra={"count": swept.recovered})
            # If this process dies right here, the leases just set lapse and a later sweep
            # signals these webhooks again: a lost signal costs one signal timeout.
            self._dispatcher.signal(swept.ids)
            total += len(swept.ids)
            if len(swept.ids) < self._s.delivery_sweep_batch:
                return total

    def _sweep_reports(self, now: float) -> int:
        """Report tasks whose lease lapsed (the broker lost the message) go out again."""
        if self._reports is None:
            return 0
        lapsed = self._reports.lapsed(now=now, lease_until=now + self._s.broker_visibility_timeout,
                                      limit=self._s.delivery_sweep_batch)
        if lapsed:
            metrics.REPORTS_RECOVERED.inc(len(lapsed))
            log.warning("report tasks sent again after their lease lapsed",
                        extra={"count": len(lapsed)})
            self._dispatcher.resend_reports(lapsed, queue=self._s.queue_name)
        return len(lapsed)

    def run(self, stop: threading.Event) -> None:
        """Sweep every interval until ``stop``; Redis trouble is logged and waited out."""
        failures = 0
        while not stop.is_set():
            self.last_turn = time.monotonic()
            try:
                self.sweep()
            except Exception as exc:
                failures += 1
                self.healthy = False
                metrics.SWEEP_ERRORS.inc()
                if failures == 1 or failures % 30 == 0:
                    log.warning("sweep failed; retrying", extra={
                        "error": f"{type(exc).__name__}: {exc}"[:300], "failures": failures})
                stop.wait(min(30.0, self._s.delivery_sweep_interval * 2 ** min(failures, 5)))
                continue
            if failures:
                log.info("sweeps resumed", extra={"after_failures": failures})
            failures = 0
            self.healthy = True
            stop.wait(self._s.delivery_sweep_interval)

    def start(self) -> threading.Event:
        """Run in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.run, args=(stop,), name="delivery-sweeper", daemon=True).start()
        return stop
