"""The composition root: every long-lived object of every process, built from ``Settings``.

The API, the workers, the CLI (and the replay Job it runs) and the operator's Redis reads ask a
``Container`` for what they need; nothing else constructs stores, engines or workflows. Tests
inject a resolver and a clock here. Objects are built on first use, so building a container
opens no connection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import cached_property

import redis
from redis.asyncio import Redis as AsyncRedis

from compliance.delivery import ssrf
from compliance.delivery.async_sender import AsyncSender
from compliance.delivery.dispatch import Dispatcher
from compliance.delivery.engine import Deliverer
from compliance.delivery.ledger import Ledger
from compliance.delivery.pump import Pump
from compliance.delivery.runner import DeliveryRunner, Sweeper
from compliance.delivery.sender import Sender
from compliance.delivery.submit import Submitter
from compliance.messaging import ComplianceCelery, create_celery_app
from compliance.redis_client import create_async_redis, create_redis
from compliance.reports.facade import ComplianceFacade, load_facade
from compliance.reports.storage import ReportStorage, build_storage
from compliance.reports.workflow import Workflow
from compliance.settings import Settings
from compliance.store import broker, keys
from compliance.store.audit import AuditStore
from compliance.store.breakers import BreakerStore, SlotPolicy
from compliance.store.console_sessions import ConsoleSessionStore
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.reports import ReportStore
from compliance.store.schedule import ScheduleStore
from compliance.store.statuses import StatusStore
from compliance.store.tenants import TenantDirectory, TenantStore


class Container:
    """Lazily built clients, stores, engines and workflows for one process."""

    def __init__(self, settings: Settings, *, resolver: ssrf.Resolver | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.resolver = resolver or ssrf.system_resolver
        self.clock = clock
        self._rng = rng

    # --- clients -----------------------------------------------------------------------------
    @cached_property
    def redis(self) -> redis.Redis:
        """Pooled Redis client (statuses, DLQ, breakers, schedule, reports)."""
        return create_redis(self.settings)

    @cached_property
    def celery(self) -> ComplianceCelery:
        """A producer-only Celery app (publishes tasks; runs none)."""
        return create_celery_app(self.settings, include_tasks=False)

    # --- stores ------------------------------------------------------------------------------
    @cached_property
    def statuses(self) -> StatusStore:
        """``webhook_status:{id}`` records."""
        return StatusStore(self.redis, self.settings)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        """``dead_letter:webhook:{id}`` entries."""
        return DeadLetterStore(self.redis, self.settings)

    @cached_property
    def breakers(self) -> BreakerStore:
        """Fleet-wide circuit breakers."""
        s = self.settings
        probe_lease = s.connect_timeout + s.read_timeout + 5
        slots = SlotPolicy(cap=s.destination_max_in_flight, ramp_seconds=s.destination_ramp_seconds,
                           lease=probe_lease,
                           reserve=max(10.0, 5 * s.delivery_sweep_interval),
                           parked_ttl=s.status_ttl_open,
                           recheck=s.delivery_sweep_interval,
                           max_wait=s.breaker_max_deferral_seconds)
        return BreakerStore(self.redis, threshold=s.breaker_failure_threshold,
                            reset_timeout=s.breaker_reset_timeout, probe_lease=probe_lease,
                            idle_ttl=s.breaker_idle_ttl, slots=slots)

    @cached_property
    def schedule(self) -> ScheduleStore:
        """Live webhooks' envelopes, leases and due times."""
        return ScheduleStore(self.redis, queue_key=self.settings.delivery_queue_key,
                             fair_depth=self.settings.fair_queue_depth,
                             refill_target=self.settings.delivery_sweep_batch)

    @cached_property
    def reports(self) -> ReportStore:
        """Report records."""
        s = self.settings
        return ReportStore(self.redis, ttl=s.report_ttl,
                           runs_ttl=s.broker_visibility_timeout * (s.max_redeliveries + 1))

    @cached_property
    def tenant_store(self) -> TenantStore:
        """Tenants, their hashed keys and encrypted signing secrets (a deleted tenant's
        secrets stay as long as its webhooks may still be delivered)."""
        s = self.settings
        cipher = TenantStore.build_cipher([k.get_secret_value() for k in s.tenant_encryption_keys])
        return TenantStore(self.redis, cipher=cipher, drain_ttl=s.status_ttl_open,
                           index_ttl=max(s.status_ttl_open, s.status_ttl_delivered,
                                         s.dead_letter_ttl, s.report_ttl),
                           clock=self.clock)

    @cached_property
    def tenants(self) -> TenantDirectory:
        """Tenant keys' owners and tenants' secrets, cached in this process."""
        s = self.settings
        return TenantDirectory(self.tenant_store, key_ttl=s.tenant_key_cache_seconds,
                               secret_ttl=s.tenant_secret_cache_seconds)

    @cached_property
    def audit(self) -> AuditStore:
        """The audit trail: ``audit.record(actor=, action=, tenant=, target=, detail=)``."""
        return AuditStore(self.redis, clock=self.clock)

    @cached_property
    def console_sessions(self) -> ConsoleSessionStore:
        """Signed-in console browsers."""
        return ConsoleSessionStore(self.redis, ttl=self.settings.console_session_ttl)

    # --- delivery ----------------------------------------------------------------------------
    @cached_property
    def ledger(self) -> Ledger:
        """Atomic state changes of webhooks."""
        return Ledger(client=self.redis, settings=self.settings, statuses=self.statuses,
                      dead_letters=self.dead_letters, schedule=self.schedule,
                      audit_store=self.audit if self.settings.audit_deliveries else None)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """Publishes delivery signals."""
        return Dispatcher(self.celery, self.redis, queue=self.settings.delivery_queue_name,
                          queue_key=self.settings.delivery_queue_key)

    @cached_property
    def submitter(self) -> Submitter:
        """Accepts webhooks and replays dead letters."""
        return Submitter(ledger=self.ledger, dispatcher=self.dispatcher,
                         dead_letters=self.dead_letters, audit=self.audit, clock=self.clock)

    @cached_property
    def sender(self) -> Sender:
        """The outbound HTTP client."""
        s = self.settings
        return Sender(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                      body_cap=s.response_body_cap, max_connections=s.delivery_concurrency)

    @cached_property
    def deliverer(self) -> Deliverer:
        """The delivery engine (one attempt and its decision)."""
        return Deliverer(settings=self.settings, ledger=self.ledger, breakers=self.breakers,
                         sender=self.sender, tenants=self.tenants, resolver=self.resolver,
                         rng=self._rng, clock=self.clock)

    @cached_property
    def runner(self) -> DeliveryRunner:
        """The delivery task's body."""
        return DeliveryRunner(settings=self.settings, schedule=self.schedule, ledger=self.ledger,
                              deliverer=self.deliverer, clock=self.clock)

    @cached_property
    def sweeper(self) -> Sweeper:
        """Signals due webhooks and recovers lapsed leases."""
        return Sweeper(settings=self.settings, schedule=self.schedule,
                       dispatcher=self.dispatcher, reports=self.reports, breakers=self.breakers,
                       clock=self.clock)

    def pump(self, max_in_flight: int) -> Pump:
        """A new asyncio delivery engine (one per worker process; it owns its event loop)."""
        s = self.settings
        sender = AsyncSender(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                             body_cap=s.response_body_cap, max_connections=max_in_flight,
                             allow_loopback=s.allow_loopback_targets, resolver=self.resolver,
                             allowed_networks=ssrf.networks(tuple(s.allowed_target_networks)))
        scripts = [*self.statuses.scripts, *self.schedule.scripts, *self.breakers.scripts,
                   *self.ledger.scripts]
        return Pump(settings=s, schedule=self.schedule, ledger=self.ledger,
                    deliverer=self.deliverer, breakers=self.breakers, sender=sender,
                    redis_factory=lambda: create_async_redis(s), scripts=scripts,
                    max_in_flight=max_in_flight, clock=self.clock)

    # --- reports -----------------------------------------------------------------------------
    @cached_property
    def facade(self) -> ComplianceFacade:
        """The configured compliance facade (raises when it cannot load)."""
        return load_facade(self.settings)

    @cached_property
    def storage(self) -> ReportStorage:
        """The configured report storage (raises when misconfigured)."""
        return build_storage(self.settings)

    @cached_property
    def report_workflow(self) -> Workflow:
        """Report generation and settlement (worker side)."""
        return Workflow(settings=self.settings, records=self.reports, storage=self.storage,
                        facade=self.facade, submitter=self.submitter)

    # --- fleet-wide readings -----------------------------------------------------------------
    def async_redis(self) -> AsyncRedis:
        """A new asyncio client, for the event loop that calls this (the API's requests)."""
        return create_async_redis(self.settings, max_connections=self.settings.redis_max_connections)

    def queue_lengths(self) -> dict[str, int]:
        """Waiting messages per queue."""
        return {name: self.queue_length(name)
                for name in (self.settings.queue_name, self.settings.delivery_queue_name)}

    def queue_length(self, queue: str) -> int:
        """Waiting messages in one queue (one round trip); the delivery queue's include the
        signals in the fair backlog, which wait for room on its list."""
        return broker.queue_length(
            self.redis, prefix=self.settings.broker_key_prefix, queue=queue,
            backlog=keys.FAIR_BACKLOG if queue == self.settings.delivery_queue_name else None)

    def close(self) -> None:
        """Release pooled connections of whatever was built."""
        if "redis" in self.__dict__:
            self.redis.close()
        if "celery" in self.__dict__:
            self.celery.close()


_process: Container | None = None


def process_container(settings: Settings) -> Container:
    """This process's container (built again after a fork, see ``forget_process``)."""
    global _process  # noqa: PLW0603 - one container per process by design
    if _process is None or _process.settings is not settings:
        _process = Container(settings)
    return _process


def forget_process() -> None:
    """Drop clients inherited from a parent process (prefork children)."""
    global _process  # noqa: PLW0603
    _process = None
