"""Circuit breakers per destination, shared by every worker through atomic Lua transitions."""

from __future__ import annotations

import time
from enum import StrEnum

import redis

from compliance.store import keys
from compliance.store.records import STATE_VALUES, BreakerState

__all__ = ["STATE_VALUES", "BreakerDecision", "BreakerResult", "BreakerState", "BreakerStore"]


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

# KEYS[1]: breaker hash. ARGV: now, reset_timeout, probe_lease.
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
-- half_open: exactly one probe holds the lease; a lost probe's lease expires.
local lease = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= lease then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[3]), 'updated_at', now)
  return {'probe', '0'}
end
return {'deny', tostring(lease - now)}
"""

# KEYS[1]: breaker hash, KEYS[2]: index. ARGV: now, result (success|failure|neutral), threshold,
# destination, was_probe (1|0). Returns the state after the transition.
_RECORD = """
local now = tonumber(ARGV[1])
local result = ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('ZADD', KEYS[2], now, ARGV[4])
if state == 'half_open' then
  if ARGV[5] ~= '1' then
    return state
  end
  if result == 'failure' then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'updated_at', now,
               'probe_until', 0)
    redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
    return 'open'
  end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'updated_at', now,
             'probe_until', 0)
  return 'closed'
end
if state == 'open' then
  return state
end
if result == 'success' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'updated_at', now)
  return 'closed'
end
if result == 'failure' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HSET', KEYS[1], 'state', 'closed', 'updated_at', now)
  if failures >= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', failures)
    redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
    return 'open'
  end
end
return 'closed'
"""


class BreakerStore:
    """Fleet-wide breaker state in Redis."""

    def __init__(
        self, client: redis.Redis, *, threshold: int, reset_timeout: float, probe_lease: float
    ) -> None:
        self._r = client
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.probe_lease = probe_lease
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)

    def acquire(self, destination: str, now: float | None = None) -> tuple[BreakerDecision, float]:
        """May a request go to ``destination``? (allow | probe | deny, seconds to wait)."""
        now = time.time() if now is None else now
        decision, seconds = self._acquire(
            keys=[keys.breaker_key(destination)],
            args=[repr(now), self.reset_timeout, self.probe_lease],
        )
        return BreakerDecision(_text(decision)), float(seconds)

    def record(
        self, destination: str, result: BreakerResult, *, was_probe: bool, now: float | None = None
    ) -> str:
        """Feed one result (success | failure | neutral) into the breaker; returns its state."""
        now = time.time() if now is None else now
        return str(
            self._record(
                keys=[keys.breaker_key(destination), keys.BREAKER_INDEX],
                args=[repr(now), str(result), self.threshold, destination, "1" if was_probe else "0"],
            )
        )

    def reset(self, destination: str) -> bool:
        """Close a breaker by hand; False when no such breaker exists."""
        key = keys.breaker_key(destination)
        if not self._r.exists(key):
            return False
        self._r.hset(key, mapping={"state": "closed", "failures": 0, "probe_until": 0,
                                   "updated_at": time.time()})
        return True

    def get(self, destination: str) -> BreakerState | None:
        """One breaker, or None."""
        raw: dict[str, str] = self._r.hgetall(keys.breaker_key(destination))  # type: ignore[assignment]
        return _state(destination, raw) if raw else None

    def all(self, now: float | None = None) -> list[BreakerState]:
        """Every known breaker; open ones whose time is up are reported half-open."""
        now = time.time() if now is None else now
        names: list[str] = self._r.zrange(keys.BREAKER_INDEX, 0, -1)  # type: ignore[assignment]
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
