"""Dead-letter entries ``dead_letter:webhook:{id}``, their index, and replay claims."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from compliance.settings import Settings
from compliance.store import keys
from compliance.store.records import EVERYONE, DeadLetter, Scope

# KEYS: entry, index, claim. ARGV: webhook id, replay count of the entry that was replayed.
# Deletes the entry only if it is still that one, and always ends the claim.
_REMOVE_REPLAYED = """
local raw = redis.call('GET', KEYS[1])
local entry = raw and cjson.decode(raw)
if entry and tonumber(entry['replay_count'] or 0) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if type(entry['tenant']) == 'string' then
    redis.call('ZREM', '""" + keys.TENANT_DEAD_LETTER_INDEX_PREFIX + """' .. entry['tenant'], ARGV[1])
  end
end
redis.call('DEL', KEYS[3])
return 1
"""


@dataclass(frozen=True)
class DeadLetterFilter:
    """Selects dead letters for listing and bulk replay."""

    error_type: str | None = None
    destination: str | None = None
    older_than_seconds: float | None = None
    newer_than_seconds: float | None = None
    # Whose entries (a named tenant's are read from that tenant's own index).
    scope: Scope = EVERYONE

    def matches(self, entry: DeadLetter, now: float) -> bool:
        """True when ``entry`` is selected."""
        if not self.scope.allows(entry.tenant):
            return False
        if self.error_type and entry.error_type != self.error_type:
            return False
        if self.destination and not entry.destination.startswith(self.destination):
            return False
        age = now - entry.failed_at
        if self.older_than_seconds is not None and age < self.older_than_seconds:
            return False
        return not (self.newer_than_seconds is not None and age > self.newer_than_seconds)

    @property
    def named_tenant(self) -> str | None:
        """The named tenant whose index is read (None: the global index)."""
        return None if self.scope.everyone else self.scope.tenant

    @property
    def selects_all(self) -> bool:
        """True when no criterion is set, so every entry matches."""
        return (self.named_tenant is not None or self.scope.everyone) and (
                not self.error_type and not self.destination
                and self.older_than_seconds is None and self.newer_than_seconds is None)


@dataclass(frozen=True)
class CountedPage:
    """A page of selected entries and how many entries the selector matches in all."""

    items: list[DeadLetter]
    # Entries matching the selector; a lower bound when ``total_exact`` is False.
    total: int
    # False when counting stopped after ``DeadLetterStore.count_scan_limit`` entries.
    total_exact: bool


class DeadLetterStore:
    """Keeps final failures for 30 days and hands each out once per replay."""

    claim_seconds = 300
    # A filtered listing stops counting once its page is full and this many entries were read.
    count_scan_limit = 10_000

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self._settings = settings
        self._remove_replayed = client.register_script(_REMOVE_REPLAYED)

    def put(self, entry: DeadLetter, pipe: Any = None) -> None:
        """Store ``entry`` with the dead-letter TTL and index it by failure time (on ``pipe``,
        when given, so that it commits with the caller's other writes)."""
        own = pipe is None
        pipe = self._r.pipeline(transaction=True) if pipe is None else pipe
        pipe.set(keys.dead_letter_key(entry.webhook_id), entry.model_dump_json(),
                 ex=self._settings.dead_letter_ttl)
        pipe.zadd(keys.DEAD_LETTER_INDEX, {entry.webhook_id: entry.failed_at})
        if entry.tenant is not None:
            pipe.zadd(keys.tenant_dead_letter_index(entry.tenant),
                      {entry.webhook_id: entry.failed_at})
        if own:
            pipe.execute()

    def get(self, webhook_id: str) -> DeadLetter | None:
        """The entry, or None."""
        raw = self._r.get(keys.dead_letter_key(webhook_id))
        return DeadLetter.model_validate_json(raw) if raw else None

    def prune(self, now: float | None = None, *, index: str = keys.DEAD_LETTER_INDEX) -> int:
        """Drop index entries older than the dead-letter TTL."""
        now = time.time() if now is None else now
        cutoff = now - self._settings.dead_letter_ttl
        return int(self._r.zremrangebyscore(index, "-inf", f"({cutoff}"))

    def size(self, *, tenant: str | None = None) -> int:
        """Dead letters held (after pruning): all of them, or a named tenant's."""
        index = keys.DEAD_LETTER_INDEX if tenant is None else keys.tenant_dead_letter_index(tenant)
        self.prune(index=index)
        return int(self._r.zcard(index))

    def counts_by_error_type(self, limit: int | None = None) -> tuple[dict[str, int], bool]:
        """(dead letters by error type, exact): reads entries one by one, newest first, at most
        ``limit`` (default ``count_scan_limit``) of them; past that the counts are of those."""
        limit = limit or self.count_scan_limit
        counts: dict[str, int] = {}
        entries = self._scan()
        for scanned, entry in enumerate(entries, start=1):
            counts[entry.error_type] = counts.get(entry.error_type, 0) + 1
            if scanned >= limit:
                return counts, next(entries, None) is None
        return counts, True

    def iter(self, selector: DeadLetterFilter, *, batch_size: int = 200) -> Iterator[DeadLetter]:
        """Selected entries, newest first; stale index entries are removed on the way."""
        now = time.time()
        for entry in self._scan(batch_size, tenant=selector.named_tenant):
            if selector.matches(entry, now):
                yield entry

    def _scan(self, batch_size: int = 200, *, tenant: str | None = None) -> Iterator[DeadLetter]:
        """Every entry (of a named tenant's index, given), newest first; stale index entries
        are removed on the way."""
        index = keys.DEAD_LETTER_INDEX if tenant is None else keys.tenant_dead_letter_index(tenant)
        self.prune(index=index)
        start = 0
        while True:
            members: list[str] = self._r.zrevrange(  # type: ignore[assignment]
                index, start, start + batch_size - 1)
            if not members:
                return
            raws = self._r.mget([keys.dead_letter_key(m) for m in members])
            stale = [m for m, raw in zip(members, raws, strict=True) if raw is None]
            if stale:
                self._r.zrem(index, *stale)
            start += len(members) - len(stale)
            for raw in raws:
                if raw is not None:
                    yield DeadLetter.model_validate_json(raw)

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

    def counted_page(
        self, selector: DeadLetterFilter, *, limit: int, offset: int = 0
    ) -> CountedPage:
        """A page of selected entries plus the number of entries the selector matches.

        Unfiltered, the total is the index size (O(1)). Filtered, it is counted in the same pass
        that fills the page, which goes on past the page until the DLQ is exhausted or, once the
        page is full, ``count_scan_limit`` entries were read; then the total is a lower bound.
        """
        if selector.selects_all:
            # The page first: it drops the stale index entries it meets, which size() would count.
            return CountedPage(items=self.page(selector, limit=limit, offset=offset),
                               total=self.size(tenant=selector.named_tenant), total_exact=True)
        now = time.time()
        items: list[DeadLetter] = []
        matched = 0
        entries = self._scan(tenant=selector.named_tenant)
        for scanned, entry in enumerate(entries, start=1):
            if selector.matches(entry, now):
                if offset <= matched < offset + limit:
                    items.append(entry)
                matched += 1
            if scanned >= self.count_scan_limit and matched >= offset + limit:
                exhausted = next(entries, None) is None
                return CountedPage(items=items, total=matched, total_exact=exhausted)
        return CountedPage(items=items, total=matched, total_exact=True)

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

    def remove(self, webhook_id: str, *, replay_count: int) -> None:
        """Delete the entry after its replay was enqueued, and end the claim.

        Only the entry that was replayed (``replay_count``) is deleted: a replay that fails again
        fast (an instant 4xx, a refused URL) may already have written a new entry, with a
        higher replay count, which must stay.
        """
        self._remove_replayed(keys=[keys.dead_letter_key(webhook_id), keys.DEAD_LETTER_INDEX,
                                    f"{keys.REPLAY_CLAIM_PREFIX}{webhook_id}"],
                              args=[webhook_id, replay_count])
