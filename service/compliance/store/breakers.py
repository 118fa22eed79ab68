"""Circuit breakers per destination, shared by every worker through atomic Lua transitions."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import Any

import redis

from compliance.store import keys
from compliance.store.records import STATE_VALUES, BreakerState

# An hour: well past any reset timeout; then a fleet forgets a destination nobody calls.
DEFAULT_IDLE_TTL = 3600.0
# Not-closed index entries checked for expiry per read.
PRUNE_BATCH = 200

__all__ = ["DEFAULT_IDLE_TTL", "STATE_VALUES",
           "BreakerDecision", "BreakerResult", "BreakerState", "BreakerStore"]


class BreakerDecision(StrEnum):
    """May a request go to a destination now?"""

    ALLOW = "allow"
    PROBE = "probe"  # the one half-open probe of the fleet
    DENY = "deny"


class BreakerResult(StrEnum):
    """What one attempt tells the breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # a throttle or a 4xx: the destination works as designed

# KEYS[1]: breaker hash. ARGV: now, reset_timeout, probe_lease, half-open recheck seconds.
# Returns {decision, seconds}: decision is allow | probe | deny; seconds is the wait when denied.
_ACQUIRE = """
local state = redis.call('HGET', KEYS[1], 'state')
local now = tonumber(ARGV[1])
if (not state) or state == 'closed' then
  return {'allow', '0'}
end
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'opened_at')) + tonumber(ARGV[2])
  if now < reopen then
    return {'deny', tostring(reopen - now)}
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[3]),
             'updated_at', now)
  return {'probe', '0'}
end
-- half_open: exactly one probe holds the lease; a lost probe's lease expires. The others look
-- again after ARGV[4] seconds at most (a probe usually answers long before its lease ends, and
-- a recovered destination should not wait out the whole lease).
local lease = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= lease then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[3]), 'updated_at', now)
  return {'probe', '0'}
end
return {'deny', tostring(math.min(lease - now, tonumber(ARGV[4] or (lease - now))))}
"""

# KEYS[1]: breaker hash, KEYS[2]: index of every breaker (score: its last result),
# KEYS[3] (optional): index of breakers not closed (score: when it last opened).
# ARGV: now, result (success|failure|neutral), threshold, destination, was_probe (1|0),
# idle_ttl (optional: seconds a breaker is kept after its last result; the index is pruned
# past it). Returns the state after the transition.
_RECORD = """
local now = tonumber(ARGV[1])
local result = ARGV[2]
local name = ARGV[4]
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local after = state
local opened = false
if state == 'half_open' then
  if ARGV[5] == '1' then
    if result == 'failure' then
      redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'updated_at', now,
                 'probe_until', 0)
      redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
      after = 'open'
      opened = true
    else
      redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'updated_at', now,
                 'probe_until', 0)
      after = 'closed'
    end
  end
elseif state ~= 'open' then
  after = 'closed'
  if result == 'success' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'updated_at', now)
  elseif result == 'failure' then
    local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
    redis.call('HSET', KEYS[1], 'state', 'closed', 'updated_at', now)
    if failures >= tonumber(ARGV[3]) then
      redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', failures)
      redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
      after = 'open'
      opened = true
    end
  end
end
-- Bookkeeping: only a breaker that exists is indexed; every result restarts its idle TTL, and
-- index entries older than the TTL (their hashes are gone) are pruned as we go.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], now, name)
  local ttl = tonumber(ARGV[6] or '0')
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], math.ceil(ttl))
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now - ttl))
  end
  if KEYS[3] then
    if opened then
      redis.call('ZADD', KEYS[3], now, name)
    elseif after == 'closed' then
      redis.call('ZREM', KEYS[3], name)
    end
  end
end
return after
"""


class BreakerStore:
    """Fleet-wide breaker state in Redis."""

    def __init__(
        self, client: redis.Redis, *, threshold: int, reset_timeout: float, probe_lease: float,
        idle_ttl: float = DEFAULT_IDLE_TTL,
    ) -> None:
        self._r = client
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.probe_lease = probe_lease
        # Seconds a breaker is kept after its last result, whatever its state.
        self.idle_ttl = idle_ttl
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)

    def acquire(self, destination: str, now: float | None = None) -> tuple[BreakerDecision, float]:
        """May a request go to ``destination``? (allow | probe | deny, seconds to wait)."""
        now = time.time() if now is None else now
        decision, seconds = self._acquire(
            keys=[keys.breaker_key(destination)], args=self._acquire_args(now))
        return BreakerDecision(_text(decision)), float(seconds)

    def record(
        self, destination: str, result: BreakerResult, *, was_probe: bool,
        now: float | None = None, pipe: Any = None,
    ) -> str:
        """Feed one result (success | failure | neutral) into the breaker; returns its state
        (or, given ``pipe``, queues the update there and returns "")."""
        now = time.time() if now is None else now
        reply = self._record(
            keys=self._keys(destination),
            args=self._args(destination, result, was_probe, now),
            client=pipe,
        )
        return "" if pipe is not None else str(reply)

    def acquire_on(self, pipe: Any, destination: str, now: float) -> None:
        """Queue ``acquire`` on a pipeline; read the reply with ``acquired``."""
        self._acquire(keys=[keys.breaker_key(destination)], args=self._acquire_args(now),
                      client=pipe)

    def _acquire_args(self, now: float) -> list[Any]:
        # While a probe is out, the others look again this often (not after its whole lease).
        recheck = max(2.0, self.reset_timeout / 10)
        return [repr(now), self.reset_timeout, self.probe_lease, recheck]

    @staticmethod
    def acquired(reply: Any) -> tuple[BreakerDecision, float]:
        """The (decision, seconds to wait) of a queued ``acquire``'s reply."""
        decision, seconds = reply
        return BreakerDecision(_text(decision)), float(seconds)

    @property
    def scripts(self) -> list[Any]:
        """The Lua scripts (an asyncio pipeline needs them loaded before use)."""
        return [self._acquire, self._record]

    def _keys(self, destination: str) -> list[str]:
        return [keys.breaker_key(destination), keys.BREAKER_INDEX, keys.BREAKER_NOT_CLOSED_INDEX]

    def _args(self, destination: str, result: BreakerResult, was_probe: bool,
              now: float) -> list[str | int | float]:
        return [repr(now), str(result), self.threshold, destination, "1" if was_probe else "0",
                self.idle_ttl]

    def reset(self, destination: str) -> bool:
        """Close a breaker by hand; False when no such breaker exists."""
        key = keys.breaker_key(destination)
        if not self._r.exists(key):
            return False
        now = time.time()
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "closed", "failures": 0, "probe_until": 0,
                                "updated_at": now})
        pipe.expire(key, math.ceil(self.idle_ttl))
        pipe.zadd(keys.BREAKER_INDEX, {destination: now})
        pipe.zrem(keys.BREAKER_NOT_CLOSED_INDEX, destination)
        pipe.execute()
        return True

    def get(self, destination: str) -> BreakerState | None:
        """One breaker, or None."""
        raw: dict[str, str] = self._r.hgetall(keys.breaker_key(destination))  # type: ignore[assignment]
        return _state(destination, raw) if raw else None

    def prune(self, now: float | None = None) -> None:
        """Drop index entries whose breakers expired, a bounded batch per index and call.

        Every result prunes the main index as it is written (with the writers' TTL); here, on
        reads, an entry goes only once its hash is gone, so a reader configured with another
        TTL (the operator) cannot drop a live breaker. Not-closed entries are scored by when
        they opened, so an old score may still be a live (half-open) breaker too.
        """
        now = time.time() if now is None else now
        cutoff = f"({now - self.idle_ttl!r}"
        for index in (keys.BREAKER_INDEX, keys.BREAKER_NOT_CLOSED_INDEX):
            stale: list[str] = self._r.zrangebyscore(  # type: ignore[assignment]
                index, "-inf", cutoff, start=0, num=PRUNE_BATCH)
            if not stale:
                continue
            pipe = self._r.pipeline(transaction=False)
            for name in stale:
                pipe.exists(keys.breaker_key(name))
            gone = [name for name, alive in zip(stale, pipe.execute(), strict=True) if not alive]
            if gone:
                self._r.zrem(index, *gone)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Breakers by state (closed, open, half_open) in a few O(log n) reads; an open breaker
        whose reset timeout is up counts as half-open, as ``all`` reports it."""
        now = time.time() if now is None else now
        self.prune(now)
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(keys.BREAKER_INDEX)
        pipe.zcount(keys.BREAKER_NOT_CLOSED_INDEX, f"({now - self.reset_timeout!r}", "+inf")
        pipe.zcount(keys.BREAKER_NOT_CLOSED_INDEX, "-inf", repr(now - self.reset_timeout))
        total, open_, half = pipe.execute()
        return {"closed": max(0, int(total) - int(open_) - int(half)), "open": int(open_),
                "half_open": int(half)}

    def page(self, *, offset: int, limit: int, state: str | None = None,
             now: float | None = None) -> tuple[list[BreakerState], int]:
        """(breakers, how many match): every breaker by its last result, newest first, or the
        ``open`` / ``half_open`` ones (``not_closed``: both) by when they opened, newest first."""
        now = time.time() if now is None else now
        self.prune(now)
        boundary = now - self.reset_timeout
        if state is None:
            total = int(self._r.zcard(keys.BREAKER_INDEX))  # type: ignore[arg-type]
            names: list[str] = self._r.zrevrange(  # type: ignore[assignment]
                keys.BREAKER_INDEX, offset, offset + limit - 1)
        else:
            high, low = {"open": ("+inf", f"({boundary!r}"), "half_open": (repr(boundary), "-inf"),
                         "not_closed": ("+inf", "-inf")}[state]
            total = int(self._r.zcount(keys.BREAKER_NOT_CLOSED_INDEX, low, high))  # type: ignore[arg-type]
            names = self._r.zrevrangebyscore(  # type: ignore[assignment]
                keys.BREAKER_NOT_CLOSED_INDEX, high, low, start=offset, num=limit)
        return self._read(names, now), total

    def all(self, now: float | None = None) -> list[BreakerState]:
        """Every known breaker (O(n): for tools and tests; the API pages with ``page``)."""
        now = time.time() if now is None else now
        self.prune(now)
        names: list[str] = self._r.zrange(keys.BREAKER_INDEX, 0, -1)  # type: ignore[assignment]
        return self._read(names, now)

    def _read(self, names: list[str], now: float) -> list[BreakerState]:
        """The named breakers; open ones whose time is up are reported half-open."""
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.breaker_key(name))
        out = []
        for name, raw in zip(names, pipe.execute(), strict=True):
            if not raw:
                continue
            state = _state(name, raw)
            reopens = (state.opened_at or now) + self.reset_timeout
            if state.state == "open" and now >= reopens:
                state = BreakerState(name, "half_open", state.failures, state.opened_at,
                                     state.times_opened, state.updated_at)
            out.append(state)
        return out


def _state(destination: str, raw: dict[str, str]) -> BreakerState:
    opened = raw.get("opened_at")
    updated = raw.get("updated_at")
    return BreakerState(
        destination=destination,
        state=raw.get("state", "closed"),
        failures=int(raw.get("failures", 0)),
        opened_at=float(opened) if opened else None,
        times_opened=int(raw.get("times_opened", 0)),
        updated_at=float(updated) if updated else None,
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
