"""The asyncio delivery engine: many deliveries in flight on one event loop, few round trips.

It runs in a thread of every delivery worker process, beside Celery (which keeps one thread on
the same queue, so ``celery inspect active`` still shows deliveries at work). Per batch:

1. one Lua script pops up to N signals off ``compliance-compliance_webhooks`` *and* claims their
   webhooks (lease, run count): no signal is ever off the list unclaimed;
2. one pipeline asks the destinations' circuit breakers;
3. each delivery is sent by aiohttp, through the outbound guard's resolver;
4. the outcomes (breaker result, status, envelope, schedule or dead letter) are committed
   together in one transaction, a few milliseconds' worth at a time.

The decisions are the synchronous engine's own (``Deliverer.settle``, ``defer``, ``refuse``).
What the pump holds is only ever leased work: if it dies, the sweeper brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import uvloop
from asgi_correlation_id import correlation_id
from pydantic import ValidationError

from compliance.delivery import ssrf
from compliance.delivery.async_sender import AsyncSender
from compliance.delivery.engine import Deliverer, unresolved
from compliance.delivery.ledger import Ledger
from compliance.delivery.models import Envelope
from compliance.delivery.policy import ErrorType
from compliance.observability import metrics
from compliance.settings import Settings
from compliance.store.breakers import BreakerDecision, BreakerStore
from compliance.store.schedule import ClaimState, ScheduleStore

log = logging.getLogger(__name__)
Write = Callable[[Any], Any]


class CheckedHosts:
    """Hosts that passed the outbound guard lately: not asked again for ``seconds``."""

    def __init__(self, seconds: float = 10.0, size: int = 10_000) -> None:
        self._seconds = seconds
        self._size = size
        self._until: dict[tuple[str, int], float] = {}

    def fresh(self, host: str, port: int, now: float) -> bool:
        """Did ``host:port`` pass within the last ``seconds``?"""
        return self._until.get((host, port), 0.0) > now

    def passed(self, host: str, port: int, now: float) -> None:
        """``host:port`` passed at ``now`` (the oldest are forgotten past ``size``)."""
        if len(self._until) >= self._size:
            self._until.clear()
        self._until[(host, port)] = now + self._seconds


class Pump:
    """Takes, delivers and commits webhooks on its own event loop."""

    def __init__(self, *, settings: Settings, schedule: ScheduleStore, ledger: Ledger,
                 deliverer: Deliverer, breakers: BreakerStore, sender: AsyncSender,
                 redis_factory: Callable[[], Any], scripts: list[Any], max_in_flight: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._schedule = schedule
        self._ledger = ledger
        self._deliverer = deliverer
        self._breakers = breakers
        self._sender = sender
        self._redis_factory = redis_factory
        self._scripts = scripts
        self.max_in_flight = max_in_flight
        # When nearly full, wait for this many free slots before taking again: a take is a
        # script and a breaker pipeline (three round trips) whatever its size, and topping up
        # one slot at a time as each delivery ends cost more than the deliveries it fed.
        self._min_take = max(1, min(max_in_flight // 16, settings.delivery_sweep_batch))
        self._clock = clock
        self._redis: Any = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pending: list[tuple[Write, asyncio.Future[None], str | None]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._room: asyncio.Event | None = None
        # Set by each commit: its slot releases may have made parked webhooks due, so an idle
        # engine looks again at once rather than after its back-off.
        self._work: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Webhooks the Celery thread handed over and waits on: set when this engine is done
        # with them (or stops). Plain dict operations, atomic across threads.
        self._watched: dict[str, threading.Event] = {}
        self._checked = CheckedHosts()
        self.healthy = True
        self.last_turn = time.monotonic()  # read by the worker's liveness check

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Run the engine in a daemon thread with its own event loop."""
        threading.Thread(target=self._serve, name="delivery-pump", daemon=True).start()

    def _serve(self) -> None:
        # uvloop: the engine is event-loop bound (a timer, a write and a read per request and per
        # Redis round trip); libuv's loop costs a fraction of the selector loop's Python.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.run())

    @property
    def in_flight(self) -> int:
        """Deliveries taken and not yet finished (read from any thread)."""
        return len(self._in_flight)

    @property
    def taking(self) -> bool:
        """Running and taking work (not stopping)."""
        return self._loop is not None and not self._stopping.is_set()

    def nudge(self) -> None:
        """Look for work now (from any thread): a webhook was just made due."""
        loop, work = self._loop, self._work
        if loop is not None and work is not None:
            loop.call_soon_threadsafe(work.set)

    def watch(self, webhook_id: str) -> threading.Event:
        """An event set once this engine has finished an attempt at ``webhook_id`` (delivered,
        scheduled again, dead-lettered or parked), or has stopped. Call ``forget`` after."""
        event = self._watched.setdefault(webhook_id, threading.Event())
        if self._stopping.is_set():
            event.set()
        return event

    def forget(self, webhook_id: str) -> None:
        """Stop watching ``webhook_id``."""
        self._watched.pop(webhook_id, None)

    def stop(self, timeout: float) -> bool:
        """Take nothing more, let in-flight deliveries finish; True when they did in time."""
        self._stopping.set()
        for event in list(self._watched.values()):
            event.set()  # nobody waits on an engine that takes nothing more
        return self._stopped.wait(timeout)

    async def run(self) -> None:
        """Take batches until stopped, then drain and commit what is in flight."""
        self._redis = self._redis_factory()
        self._room = asyncio.Event()
        self._work = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        idle = 0.005
        failures = 0
        try:
            while not self._stopping.is_set():
                self.last_turn = time.monotonic()
                free = self.max_in_flight - len(self._in_flight)
                if free < self._min_take and self._in_flight:
                    self._room.clear()
                    await self._wait_for_room()
                    continue
                try:
                    taken = await self._take(min(free, self._s.delivery_sweep_batch))
                except Exception as exc:
                    failures += 1
                    self.healthy = False
                    if failures == 1 or failures % 50 == 0:
                        log.warning("delivery engine cannot take work; retrying", extra={
                            "error": f"{type(exc).__name__}: {exc}"[:300], "failures": failures})
                    await asyncio.sleep(min(5.0, 0.05 * 2 ** min(failures, 7)))
                    continue
                failures = 0
                self.healthy = True
                if taken:
                    idle = 0.005
                else:
                    self._work.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work.wait(), timeout=idle)
                    idle = min(idle * 2, 0.1)
            if self._in_flight:
                await asyncio.wait(self._in_flight)
            await self._flush()
        finally:
            await self._sender.close()
            await self._redis.aclose()
            self._stopped.set()

    async def _wait_for_room(self) -> None:
        assert self._room is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout=0.5)

    # --- taking -------------------------------------------------------------------------------
    async def _take(self, count: int) -> int:
        now = self._clock()
        taken = await self._schedule.take(self._redis, count=count, now=now,
                                          lease_until=now + self._s.delivery_lease_seconds,
                                          signal_until=now + self._s.delivery_signal_timeout)
        work: list[tuple[Envelope, ssrf.Target | ssrf.UnsafeURLError, int]] = []
        for webhook_id, claim in taken:
            if claim.state is not ClaimState.CLAIMED:
                self._finished(webhook_id)
            if claim.state is ClaimState.MISSING:
                metrics.TASKS.labels(task="deliver_webhook", state="missing").inc()
                continue
            if claim.state is not ClaimState.CLAIMED or claim.envelope is None:
                metrics.WEBHOOK_DUPLICATES.inc()
                continue
            try:
                env = Envelope.model_validate_json(claim.envelope)
            except ValidationError:
                log.error("unreadable envelope; webhook held until its record expires",
                          extra={"webhook_id": webhook_id})
                continue
            try:
                target: ssrf.Target | ssrf.UnsafeURLError = self._deliverer.target(env)
            except ssrf.UnsafeURLError as exc:
                target = exc  # refused in _attempt, with the reason
            work.append((env, target, claim.runs))
        if not work:
            return len(taken)
        decisions = await self._acquire(
            [(t.origin, env.webhook_id) for env, t, _ in work if isinstance(t, ssrf.Target)], now)
        answers = iter(decisions)
        for env, target, runs in work:
            decision = next(answers) if isinstance(target, ssrf.Target) else None
            task = asyncio.create_task(self._deliver(env, target, runs, decision))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(taken)

    async def _acquire(self, wanted: list[tuple[str, str]],
                       now: float) -> list[tuple[BreakerDecision, float]]:
        """Ask each (destination, webhook)'s breaker and cap, in one round trip."""
        if not wanted:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for script in self._breakers.scripts:
            pipe.scripts.add(script)
        for origin, webhook_id in wanted:
            self._breakers.acquire_on(pipe, origin, now, webhook_id=webhook_id)
        return [self._breakers.acquired(reply) for reply in await pipe.execute()]

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._room is not None and (
                self.max_in_flight - len(self._in_flight) >= self._min_take or not self._in_flight):
            self._room.set()

    # --- one delivery -------------------------------------------------------------------------
    async def _deliver(self, env: Envelope, target: ssrf.Target | ssrf.UnsafeURLError, runs: int,
                       decision: tuple[BreakerDecision, float] | None) -> None:
        # This task's own context: its log lines (and its commit's) carry the request's id.
        correlation_id.set(env.correlation_id or None)
        started = time.monotonic()
        state = "done"
        try:
            await self._attempt(env, target, runs, decision)
        except Exception:
            state = "error"
            log.exception("delivery attempt crashed; due again shortly",
                          extra={"webhook_id": env.webhook_id})
            now = self._clock()
            await self._commit(lambda pipe: self._ledger.reschedule(
                env, now, due_at=now + min(60, 2 ** runs), reset_runs=False,
                error=(ErrorType.INTERNAL, "delivery attempt crashed"), pipe=pipe))
        metrics.child(metrics.TASKS, "deliver_webhook", state).inc()
        metrics.child(metrics.TASK_DURATION, "deliver_webhook").observe(time.monotonic() - started)
        self._finished(env.webhook_id)

    def _finished(self, webhook_id: str) -> None:
        if self._watched and (event := self._watched.get(webhook_id)) is not None:
            event.set()

    async def _attempt(self, env: Envelope, target: ssrf.Target | ssrf.UnsafeURLError, runs: int,
                       decision: tuple[BreakerDecision, float] | None) -> None:
        d = self._deliverer
        if runs > self._s.max_redeliveries:
            message = f"attempt started {runs} times without finishing"
            await self._commit(lambda pipe: d.dead_letter(env, ErrorType.POISON, message, pipe=pipe))
            return
        if isinstance(target, ssrf.UnsafeURLError):
            await self._commit(lambda pipe: d.refuse(env, target, pipe=pipe))
            return
        assert decision is not None  # every parsed target was asked of its breaker
        verdict, wait = decision
        if verdict is BreakerDecision.DENY:
            await self._commit(lambda pipe: d.defer(env, target.origin, wait, pipe=pipe))
            return
        if verdict is BreakerDecision.PARKED:
            d.parked()
            return
        probe = verdict is BreakerDecision.PROBE
        try:
            await self._check(target)
        except ssrf.UnresolvedHostError as exc:
            failed = unresolved(exc)
            await self._commit(lambda pipe: d.settle(env, target.origin, probe, failed, {}, pipe=pipe))
            return
        except ssrf.UnsafeURLError as exc:
            forbidden = exc  # `exc` is unbound after the block; the write runs later
            await self._commit(lambda pipe: d.refuse(env, forbidden, pipe=pipe,
                                                     origin=target.origin))
            return
        try:
            body, headers = d.sign(env)
        except ssrf.Unsignable as exc:  # the secrets went while the host was checked
            unsignable = exc
            await self._commit(lambda pipe: d.refuse(env, unsignable, pipe=pipe,
                                                     origin=target.origin))
            return
        result = await self._sender.post(target, body, headers)
        await self._commit(lambda pipe: d.settle(env, target.origin, probe, result, headers,
                                                 pipe=pipe))

    async def _check(self, target: ssrf.Target) -> None:
        """The outbound guard before anything is sent: a forbidden address is refused, not
        retried. A host that passed is not asked again for a few seconds (``CheckedHosts``; a
        DNS lookup on a thread per delivery, otherwise): what guards the connection itself is
        aiohttp's resolver, which checks every new connection, so a host rebound to a forbidden
        address in that time is still refused there."""
        now = time.monotonic()
        if self._checked.fresh(target.host, target.port, now):
            return
        if ssrf.is_ip_literal(target.host):
            self._deliverer.resolve(target)
        else:
            await asyncio.to_thread(self._deliverer.resolve, target)
        self._checked.passed(target.host, target.port, now)

    # --- committing ---------------------------------------------------------------------------
    async def _commit(self, write: Write) -> None:
        """Queue ``write`` for the next transaction; return once it is committed (or failed).

        The write runs inside the flush, in another task: it carries this delivery's
        correlation id with it, so the log lines it writes name the request they belong to."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future, correlation_id.get()))
        if len(self._pending) >= 256:
            await self._flush()
        elif self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_soon())
        try:
            await future
        except Exception as exc:
            # Not committed: the webhook's lease brings it back (a duplicate, never a loss).
            log.warning("delivery outcome not recorded; the lease will bring it back",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    async def _flush_soon(self) -> None:
        # Loops until nothing is pending: a write queued while a flush was executing would
        # otherwise wait for the next delivery's commit (or, at the end of a burst, for its
        # lease to lapse, and be sent twice). No await between the check and the return, so a
        # commit that finds this task done always starts a new one.
        while self._pending:
            await asyncio.sleep(0.002)
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        pipe = self._redis.pipeline(transaction=True)
        for script in self._scripts:
            pipe.scripts.add(script)
        error: Exception | None = None
        try:
            self._ledger.open_batch(pipe)  # the outcomes' audit entries: one append at the end
            for write, _, cid in batch:
                token = correlation_id.set(cid)
                try:
                    write(pipe)
                finally:
                    correlation_id.reset(token)
            self._ledger.close_batch(pipe)
            await pipe.execute()
        except Exception as exc:
            error = exc
        for _, future, _ in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if self._work is not None:
            self._work.set()
