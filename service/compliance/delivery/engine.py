"""One delivery attempt from start to decision.

``Deliverer.attempt`` runs one attempt synchronously (the Celery task's path). Its steps are
public so that the asyncio engine (``delivery.pump``) runs the same decisions with its own I/O:
``target``, ``resolve``, ``sign``, then ``settle`` or ``defer`` or ``refuse``, each of which may
queue its writes on a pipeline instead of committing them at once.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from compliance.delivery import policy, signing, ssrf
from compliance.delivery.ledger import Ledger
from compliance.delivery.models import Envelope
from compliance.delivery.policy import Action, ErrorType
from compliance.delivery.sender import AttemptResult, Sender
from compliance.observability import metrics
from compliance.settings import Settings
from compliance.store.breakers import BreakerDecision, BreakerResult, BreakerStore
from compliance.store.records import Attempt
from compliance.store.tenants import TenantDirectory

log = logging.getLogger(__name__)


class AttemptOutcome(StrEnum):
    """How one attempt ended (the task metric's state)."""

    DELIVERED = "delivered"
    RETRY = "retry"  # due again after a backoff
    DEFERRED = "deferred"  # the destination's breaker is open: parked until it lets requests by
    PARKED = "parked"  # the destination is at its cap: waits for a slot (not an attempt)
    DEAD_LETTERED = "dead_lettered"


class Deliverer:
    """Runs attempts; owns no I/O of its own beyond the stores and the sender it is given."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        breakers: BreakerStore,
        sender: Sender,
        tenants: TenantDirectory | None = None,
        resolver: ssrf.Resolver = ssrf.system_resolver,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._ledger = ledger
        self._breakers = breakers
        self._sender = sender
        self._tenants = tenants
        self._resolver = resolver
        self._rng = rng or random.Random()
        self._clock = clock

    @property
    def secrets(self) -> Sequence[str]:
        """The default tenant's signing secrets."""
        return [s.get_secret_value() for s in self._s.webhook_secrets]

    def secrets_for(self, tenant: str | None) -> Sequence[str]:
        """The secrets signing a webhook of ``tenant`` now (a named tenant's from its cached
        list: no Redis read per delivery, one per tenant per tenant_secret_cache_seconds)."""
        if tenant is None:
            return self.secrets
        if self._tenants is None:
            return []
        return self._tenants.secrets(tenant, self._clock())

    def attempt(self, env: Envelope) -> AttemptOutcome:
        """Try once (the caller holds the webhook's lease) and record what follows."""
        try:
            target = self.target(env)
        except ssrf.UnsafeURLError as exc:
            return self.refuse(env, exc)

        # The breaker and the destination's cap first: while the breaker is open nothing is
        # resolved or sent, and the webhook waits; at the cap, it waits for a slot.
        decision, wait = self._breakers.acquire(target.origin, now=self._clock(),
                                                webhook_id=env.webhook_id)
        if decision is BreakerDecision.DENY:
            return self.defer(env, target.origin, wait)
        if decision is BreakerDecision.PARKED:
            return self.parked()
        probe = decision is BreakerDecision.PROBE
        try:
            address = self.resolve(target)
        except ssrf.UnresolvedHostError as exc:
            return self.settle(env, target.origin, probe, unresolved(exc), {})
        except ssrf.UnsafeURLError as exc:
            # Refused before anything was sent; a probe lease taken here lapses on its own.
            return self.refuse(env, exc, origin=target.origin)
        try:
            body, headers = self.sign(env)
        except ssrf.Unsignable as exc:  # the secrets went while the host was resolved
            return self.refuse(env, exc, origin=target.origin)
        result = self._sender.post(target, address, body, headers)
        return self.settle(env, target.origin, probe, result, headers)

    def target(self, env: Envelope) -> ssrf.Target:
        """The parsed destination (raises UnsafeURLError; Unsignable for a named tenant's
        webhook when that tenant has no signing secret left: it is not sent unsigned)."""
        if env.tenant is not None and not self.secrets_for(env.tenant):
            raise ssrf.Unsignable(f"tenant {env.tenant} has no signing secret")
        return ssrf.parse_target(env.url, https_only=self._s.https_only,
                                 allowed_ports=self._s.allowed_ports)

    def resolve(self, target: ssrf.Target) -> str:
        """The checked address to connect to (raises UnresolvedHostError, UnsafeURLError)."""
        return ssrf.resolve_checked(target, allow_loopback=self._s.allow_loopback_targets,
                                    resolver=self._resolver,
                                    allowed_networks=ssrf.networks(tuple(self._s.allowed_target_networks)))

    def sign(self, env: Envelope) -> tuple[bytes, dict[str, str]]:
        """The body and the signed headers of one attempt (raises Unsignable for a named
        tenant's webhook when that tenant has no signing secret left: the secrets are read
        again here, after ``target`` checked them, and may have gone in between)."""
        secrets = self.secrets_for(env.tenant)
        if env.tenant is not None and not secrets:
            raise ssrf.Unsignable(f"tenant {env.tenant} has no signing secret")
        body = json.dumps(
            {"type": env.event, "timestamp": _iso(self._clock()), "data": env.payload},
            separators=(",", ":"), sort_keys=True,
        )
        headers = signing.signed_headers(
            secrets=secrets, webhook_id=env.webhook_id, body=body,
            correlation_id=env.correlation_id,
        )
        return body.encode(), headers

    def refuse(self, env: Envelope, exc: ssrf.UnsafeURLError, pipe: Any = None,
               origin: str | None = None) -> AttemptOutcome:
        """Dead-letter a webhook whose URL the outbound guard refuses (giving back the slot it
        took at ``origin``, if it took one)."""
        if origin is not None:
            self._breakers.give_back(origin, env.webhook_id, now=self._clock(), pipe=pipe)
        message = exc.reason if isinstance(exc, ssrf.Unsignable) else f"unsafe URL: {exc.reason}"
        return self._dead_letter(env, ErrorType.VALIDATION, message, {}, pipe=pipe)

    def settle(
        self, env: Envelope, origin: str, was_probe: bool, result: AttemptResult,
        headers: dict[str, str], pipe: Any = None,
    ) -> AttemptOutcome:
        """Feed the breaker, decide the next step, and record it (on ``pipe`` when given)."""
        now = self._clock()
        outcome = (
            policy.classify_status(result.status_code)
            if result.status_code is not None
            else policy.classify_error(result.error_type or ErrorType.CONNECTION)
        )
        breaker_result = (
            BreakerResult.SUCCESS if outcome.delivered
            else BreakerResult.FAILURE if outcome.counts_as_breaker_failure
            else BreakerResult.NEUTRAL
        )
        self._breakers.record(origin, breaker_result, was_probe=was_probe, now=now, pipe=pipe,
                              webhook_id=env.webhook_id)
        metrics.WEBHOOK_DELIVERY_DURATION.observe(result.duration_seconds)
        metrics.child(metrics.WEBHOOK_ATTEMPTS,
                      "delivered" if outcome.delivered else str(outcome.error_type)).inc()
        attempt = Attempt(
            at=now, status_code=result.status_code,
            error_type=(outcome.error_type or "none"),
            message=result.message, duration_seconds=round(result.duration_seconds, 4),
        )
        deferred = env.deferred_seconds + (now - env.deferred_since
                                           if env.deferred_since is not None else 0.0)
        env = env.model_copy(update={"attempts": env.attempts + 1, "history": [*env.history, attempt],
                                     "deferred_seconds": deferred, "deferred_since": None})
        delay = 0.0 if outcome.delivered else policy.retry_delay(
            retry_number=env.attempts,
            status_code=result.status_code,
            retry_after=(policy.parse_retry_after(result.retry_after)
                         if result.status_code in policy.RETRY_AFTER_CODES else None),
            base=self._s.retry_base_seconds,
            cap=self._s.retry_max_seconds,
            retry_after_cap=self._s.retry_after_max_seconds,
            rng=self._rng,
        )
        step = policy.decide(
            outcome, attempts_made=env.attempts, max_retries=self._s.max_retries, delay_if_retry=delay
        )
        if step.action is Action.DELIVERED:
            self._ledger.delivered(env, now, pipe=pipe)
            metrics.child(metrics.WEBHOOK_DELIVERIES, "delivered").inc()
            log.info("webhook delivered", extra={"webhook_id": env.webhook_id,
                                                 "attempts": env.attempts})
            return AttemptOutcome.DELIVERED
        error_type = outcome.error_type or ErrorType.INTERNAL
        if step.action is Action.RETRY:
            metrics.WEBHOOK_RETRIES.inc()
            self._ledger.reschedule(env, now, due_at=now + step.delay,
                                    error=(error_type, result.message),
                                    status_code=result.status_code, pipe=pipe)
            log.info("webhook retry scheduled", extra={
                "webhook_id": env.webhook_id, "attempts": env.attempts,
                "delay": round(step.delay, 3), "error_type": str(error_type),
                "error": result.message})
            return AttemptOutcome.RETRY
        return self._dead_letter(env, error_type, result.message, headers,
                                 status_code=result.status_code, pipe=pipe)

    def defer(self, env: Envelope, origin: str, wait: float, pipe: Any = None) -> AttemptOutcome:
        """The breaker is open: park the webhook with its destination until the breaker lets
        requests through again (not an attempt), or dead-letter it once it has waited too long."""
        now = self._clock()
        since = env.deferred_since if env.deferred_since is not None else now
        delay = policy.deferral_delay(
            open_remaining=wait, jitter_cap=max(1.0, self._s.breaker_reset_timeout / 10),
            rng=self._rng,
        )
        # Deferred so far (this time and before earlier attempts), and until the next probe.
        waited = env.deferred_seconds + (now - since)
        if waited + delay > self._s.breaker_max_deferral_seconds:
            return self._dead_letter(
                env, ErrorType.CIRCUIT_OPEN,
                f"circuit breaker for {origin} stayed open for {waited:.0f} s", {}, pipe=pipe,
            )
        metrics.WEBHOOK_DEFERRALS.inc()
        env = env.model_copy(update={"deferred_since": since})
        self._ledger.park(env, now, destination=origin, until=now + delay,
                          error=(ErrorType.CIRCUIT_OPEN, f"circuit open for {origin}"), pipe=pipe)
        return AttemptOutcome.DEFERRED

    @staticmethod
    def parked() -> AttemptOutcome:
        """The destination is at its cap; the acquire already parked the webhook (no write)."""
        metrics.WEBHOOK_PARKED.inc()
        return AttemptOutcome.PARKED

    def dead_letter(self, env: Envelope, error_type: ErrorType, message: str,
                    pipe: Any = None) -> AttemptOutcome:
        """Settle a webhook as failed from outside an attempt (poison message, time limit)."""
        return self._dead_letter(env, error_type, message, {}, pipe=pipe)

    def _dead_letter(
        self, env: Envelope, error_type: ErrorType, message: str, headers: dict[str, str],
        status_code: int | None = None, pipe: Any = None,
    ) -> AttemptOutcome:
        self._ledger.dead_letter(env, self._clock(), error_type=error_type, message=message,
                                 headers=signing.without_secrets(headers), status_code=status_code,
                                 pipe=pipe)
        metrics.WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
        metrics.DLQ_WRITES.labels(error_type=str(error_type)).inc()
        log.warning("webhook dead-lettered", extra={
            "webhook_id": env.webhook_id, "error_type": str(error_type), "error": message})
        return AttemptOutcome.DEAD_LETTERED


def unresolved(exc: ssrf.UnresolvedHostError) -> AttemptResult:
    """A DNS failure as an attempt's result: it may pass, so it is retried like a refused
    connection, and the breaker counts it like one (a destination nobody can resolve is down)."""
    return AttemptResult(None, ErrorType.CONNECTION, exc.reason, 0.0)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
