"""Producer side: record a webhook (the truth), signal it, and replay dead letters."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from compliance.delivery.dispatch import Dispatcher
from compliance.delivery.fairshare import TenantLimits
from compliance.delivery.ledger import Ledger
from compliance.delivery.models import Envelope, envelope_from_dead_letter
from compliance.store.audit import AuditStore
from compliance.store.dead_letters import DeadLetterFilter, DeadLetterStore
from compliance.store.records import EVERYONE, DeadLetter, Scope
from compliance.store.schedule import Verdict

log = logging.getLogger(__name__)


class ReplayOutcome(StrEnum):
    """What replaying one dead letter did."""

    REPLAYED = "replayed"
    MISSING = "missing"
    BUSY = "busy"  # another replay holds it right now
    FAILED = "failed"


def new_webhook_id() -> str:
    """A stable id receivers use to de-duplicate (``webhook-id`` header)."""
    return f"wh_{uuid.uuid4().hex}"


class Submitter:
    """Records webhooks with their envelope, then signals the delivery queue."""

    def __init__(self, *, ledger: Ledger, dispatcher: Dispatcher, dead_letters: DeadLetterStore,
                 audit: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._dlq = dead_letters
        self._audit = audit
        self._clock = clock

    def submit(self, env: Envelope) -> None:
        """Record ``pending`` with the envelope and push its signal, in one script (one round
        trip). A signal lost later is sent again by the sweeper when the record's signal lease
        lapses."""
        self._ledger.accept(env, self._clock(), signal=self._dispatcher.message(env.webhook_id))

    async def submit_async(self, aclient: Any, env: Envelope, *, most_queued: int,
                           limits: TenantLimits | None = None) -> Verdict:
        """``submit`` on an asyncio client (the API's event loop), refused with nothing written
        when the delivery queue already holds ``most_queued`` signals or ``env``'s tenant is
        past its ``limits``."""
        return await self._ledger.accept_async(
            aclient, env, self._clock(), signal=self._dispatcher.message(env.webhook_id),
            most_queued=most_queued, limits=limits)

    def replay(self, webhook_id: str, *, actor: str, scope: Scope = EVERYONE,
               bulk: bool = False) -> ReplayOutcome:
        """Re-enqueue one dead letter with the same id and a fresh attempt budget (MISSING when
        it is not ``scope``'s to replay); the audit trail names ``actor`` (a key id or a system
        actor) and the dead letter's tenant."""
        if not scope.everyone:
            seen = self._dlq.get(webhook_id)
            if seen is None or not scope.allows(seen.tenant):
                return ReplayOutcome.MISSING
        entry = self._dlq.claim(webhook_id)
        if entry is None:
            return (ReplayOutcome.BUSY if self._dlq.get(webhook_id) is not None
                    else ReplayOutcome.MISSING)
        try:
            self.submit(envelope_from_dead_letter(entry))
        except Exception:
            self._dlq.release(webhook_id)
            raise
        self._dlq.remove(webhook_id, replay_count=entry.replay_count)
        self._audit.record(actor=actor, action="dead_letter.replay", tenant=entry.tenant,
                           target=webhook_id, detail={"replay": entry.replay_count + 1,
                                                      **({"bulk": True} if bulk else {})})
        return ReplayOutcome.REPLAYED

    def replay_many(
        self, selector: DeadLetterFilter, *, limit: int, dry_run: bool, actor: str,
        tenant: str | None = None, rate_per_second: float | None = None,
        on_progress: Callable[[ReplayOutcome], None] | None = None,
    ) -> ReplayCounts:
        """Replay up to ``limit`` selected entries (or only count them when ``dry_run``). Each
        replay is audited in its dead letter's tenant, and the bulk replay once (selector and
        counts) in the selector's tenant, or ``tenant`` (the caller's) when it selects from
        every tenant."""
        counts = ReplayCounts()
        interval = 1.0 / rate_per_second if rate_per_second else 0.0
        # Select first, then replay: replaying removes entries and would shift a live iteration.
        selected = list(_take(self._dlq.iter(selector), limit))
        for entry in selected:
            counts.matched += 1
            if dry_run:
                continue
            try:
                outcome = self.replay(entry.webhook_id, actor=actor, bulk=True)
            except Exception as exc:  # one broken entry must not stop a bulk replay
                counts.failed += 1
                counts.errors.append(f"{entry.webhook_id}: {exc}")
                outcome = ReplayOutcome.FAILED
            else:
                if outcome is ReplayOutcome.REPLAYED:
                    counts.replayed += 1
                    counts.replayed_ids.append(entry.webhook_id)
                else:
                    counts.skipped += 1
            if on_progress:
                on_progress(outcome)
            if interval:
                time.sleep(interval)
        if not dry_run:
            scope = selector.scope
            self._audit.record(actor=actor, action="dead_letter.replay_bulk",
                               tenant=tenant if scope.everyone else scope.tenant,
                               detail={"filter": {k: v for k, v in vars(selector).items()
                                                  if v is not None and k != "scope"},
                                       "limit": limit, "matched": counts.matched,
                                       "replayed": counts.replayed, "skipped": counts.skipped,
                                       "failed": counts.failed})
        return counts


@dataclass
class ReplayCounts:
    """What a bulk replay did."""

    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    replayed_ids: list[str] = field(default_factory=list)  # in the order they were replayed


def _take(items: Iterator[DeadLetter], limit: int) -> Iterator[DeadLetter]:
    for index, item in enumerate(items):
        if index >= limit:
            return
        yield item
