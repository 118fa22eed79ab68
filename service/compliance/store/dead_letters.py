"""Dead-letter entries ``dead_letter:webhook:{id}``, their index, and replay claims."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from compliance.settings import Settings
from compliance.store import keys
from compliance.store.records import DeadLetter


@dataclass(frozen=True)
class DeadLetterFilter:
    """Selects dead letters for listing and bulk replay."""

    error_type: str | None = None
    destination: str | None = None
    older_than_seconds: float | None = None
    newer_than_seconds: float | None = None

    def matches(self, entry: DeadLetter, now: float) -> bool:
        """True when ``entry`` is selected."""
        if self.error_type and entry.error_type != self.error_type:
            return False
        if self.destination and not entry.destination.startswith(self.destination):
            return False
        age = now - entry.failed_at
        if self.older_than_seconds is not None and age < self.older_than_seconds:
            return False
        return not (self.newer_than_seconds is not None and age > self.newer_than_seconds)


class DeadLetterStore:
    """Keeps final failures for 30 days and hands each out once per replay."""

    claim_seconds = 300

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self._settings = settings

    def put(self, entry: DeadLetter) -> None:
        """Store ``entry`` with the dead-letter TTL and index it by failure time."""
        pipe = self._r.pipeline(transaction=True)
        pipe.set(keys.dead_letter_key(entry.webhook_id), entry.model_dump_json(),
                 ex=self._settings.dead_letter_ttl)
        pipe.zadd(keys.DEAD_LETTER_INDEX, {entry.webhook_id: entry.failed_at})
        pipe.execute()

    def get(self, webhook_id: str) -> DeadLetter | None:
        """The entry, or None."""
        raw = self._r.get(keys.dead_letter_key(webhook_id))
        return DeadLetter.model_validate_json(raw) if raw else None

    def prune(self, now: float | None = None) -> int:
        """Drop index entries older than the dead-letter TTL."""
        now = time.time() if now is None else now
        cutoff = now - self._settings.dead_letter_ttl
        return int(self._r.zremrangebyscore(keys.DEAD_LETTER_INDEX, "-inf", f"({cutoff}"))

    def size(self) -> int:
        """Dead letters held (after pruning)."""
        self.prune()
        return int(self._r.zcard(keys.DEAD_LETTER_INDEX))

    def iter(self, selector: DeadLetterFilter, *, batch_size: int = 200) -> Iterator[DeadLetter]:
        """Selected entries, newest first; stale index entries are removed on the way."""
        self.prune()
        now = time.time()
        start = 0
        while True:
            members: list[str] = self._r.zrevrange(  # type: ignore[assignment]
                keys.DEAD_LETTER_INDEX, start, start + batch_size - 1)
            if not members:
                return
            raws = self._r.mget([keys.dead_letter_key(m) for m in members])
            stale = [m for m, raw in zip(members, raws, strict=True) if raw is None]
            if stale:
                self._r.zrem(keys.DEAD_LETTER_INDEX, *stale)
            start += len(members) - len(stale)
            for raw in raws:
                if raw is None:
                    continue
                entry = DeadLetter.model_validate_json(raw)
                if selector.matches(entry, now):
                    yield entry

    def page(
        self, selector: DeadLetterFilter, *, limit: int, offset: int = 0
    ) -> list[DeadLetter]:
        """A page of selected entries, newest first."""
        out: list[DeadLetter] = []
        for index, entry in enumerate(self.iter(selector)):
            if index < offset:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def claim(self, webhook_id: str) -> DeadLetter | None:
        """Take the entry for replay; a concurrent claim of the same entry gets None."""
        claimed = self._r.set(f"{keys.REPLAY_CLAIM_PREFIX}{webhook_id}", "1", nx=True,
                              ex=self.claim_seconds)
        if not claimed:
            return None
        entry = self.get(webhook_id)
        if entry is None:
            self.release(webhook_id)
        return entry

    def release(self, webhook_id: str) -> None:
        """Give a claim back without replaying (enqueue failed)."""
        self._r.delete(f"{keys.REPLAY_CLAIM_PREFIX}{webhook_id}")

    def remove(self, webhook_id: str) -> None:
        """Delete the entry after its replay was enqueued."""
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(keys.dead_letter_key(webhook_id))
        pipe.zrem(keys.DEAD_LETTER_INDEX, webhook_id)
        pipe.delete(f"{keys.REPLAY_CLAIM_PREFIX}{webhook_id}")
        pipe.execute()
