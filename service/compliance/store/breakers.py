"""Circuit breakers per destination, shared by every worker through atomic Lua transitions."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
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
           "BreakerDecision", "BreakerResult", "BreakerState", "BreakerStore", "SlotPolicy"]


class BreakerDecision(StrEnum):
    """May a request go to a destination now?"""

    ALLOW = "allow"
    PROBE = "probe"  # the one half-open probe of the fleet
    DENY = "deny"
    PARKED = "parked"  # the destination is at its cap: the webhook waits for a slot


class BreakerResult(StrEnum):
    """What one attempt tells the breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # a throttle or a 4xx: the destination works as designed

# Lua shared by the scripts below: a destination's effective cap (it ramps up again after a
# recovery: 1, 2, 4, ... in flight, doubling every ``ramp`` seconds since the breaker closed), and
# the release of parked webhooks into the due set as slots free, each with its slot reserved.
_SLOTS_FN = """
local function effective_cap(breaker, cap, now, ramp)
  local closed_at = tonumber(redis.call('HGET', breaker, 'closed_at') or '0')
  if closed_at > 0 and ramp > 0 then
    local grown = math.floor(2 ^ ((now - closed_at) / ramp))
    if grown < cap then
      return math.max(1, grown)
    end
  end
  return cap
end
local function release(breaker, slots, parked, due, now, cap, ramp, reserve_until, most)
  if redis.call('EXISTS', parked) == 0 then
    return 0
  end
  local n = most
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', '(' .. tostring(now))
    n = math.min(most, effective_cap(breaker, cap, now, ramp) - redis.call('ZCARD', slots))
  end
  if n <= 0 then
    return 0
  end
  local popped = redis.call('ZPOPMIN', parked, n)
  for i = 1, #popped, 2 do
    redis.call('ZADD', due, now, popped[i])
    if cap > 0 then
      redis.call('ZADD', slots, reserve_until, popped[i])
    end
  end
  return #popped / 2
end
"""

# KEYS[1]: breaker hash; for a webhook's slot: KEYS[2] slots, KEYS[3] parked, KEYS[4] parked
# index, KEYS[5] leased index, KEYS[6] webhook hash.
# ARGV: now, reset_timeout, probe_lease, half-open recheck seconds, then (optional) webhook id,
# cap (0: none), slot until, ramp seconds, destination, parked TTL, park recheck seconds.
# Returns {decision, seconds}: allow | probe | deny | parked; seconds is the wait when denied.
# A webhook allowed while its destination is at its cap is parked instead: its lease and run are
# given back and it waits, in order, for a slot (``release``); the sweeper looks again now and
# then in case no release came.
_ACQUIRE = _SLOTS_FN + """
local state = redis.call('HGET', KEYS[1], 'state')
local now = tonumber(ARGV[1])
local id = ARGV[5] or ''
local cap = tonumber(ARGV[6] or '0')
local function hold(forced)
  if id == '' or cap <= 0 then
    return true
  end
  if redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZADD', KEYS[2], ARGV[7], id)  -- reserved for it by a release
    return true
  end
  if not forced then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
    if redis.call('ZCARD', KEYS[2]) >= effective_cap(KEYS[1], cap, now, tonumber(ARGV[8])) then
      return false
    end
  end
  redis.call('ZADD', KEYS[2], ARGV[7], id)
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[7]) - now) + 60)
  return true
end
local function park()
  redis.call('ZREM', KEYS[5], id)
  if redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('HDEL', KEYS[6], 'held_until')
    redis.call('HINCRBY', KEYS[6], 'runs', -1)
    redis.call('ZADD', KEYS[3], 'NX', now, id)
    redis.call('EXPIRE', KEYS[3], ARGV[10])
    redis.call('ZADD', KEYS[4], 'NX', now + tonumber(ARGV[11]), ARGV[9])
  end
  return {'parked', '0'}
end
if (not state) or state == 'closed' then
  if hold(false) then
    return {'allow', '0'}
  end
  return park()
end
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'opened_at')) + tonumber(ARGV[2])
  if now < reopen then
    return {'deny', tostring(reopen - now)}
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[3]),
             'updated_at', now)
  hold(true)
  return {'probe', '0'}
end
-- half_open: exactly one probe holds the lease; a lost probe's lease expires. The others look
-- again after ARGV[4] seconds at most (a probe usually answers long before its lease ends, and
-- a recovered destination should not wait out the whole lease).
local lease = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= lease then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[3]), 'updated_at', now)
  hold(true)
  return {'probe', '0'}
end
return {'deny', tostring(math.min(lease - now, tonumber(ARGV[4] or (lease - now))))}
"""

# KEYS[1]: breaker hash, KEYS[2]: index of every breaker (score: its last result),
# KEYS[3]: index of breakers not closed (score: when it last opened); for a webhook's slot:
# KEYS[4] slots, KEYS[5] parked, KEYS[6] due.
# ARGV: now, result (success|failure|neutral), threshold, destination, was_probe (1|0),
# idle_ttl (seconds a breaker is kept after its last result; the index is pruned past it), then
# (optional) webhook id, cap, ramp seconds, reserve until.
# Returns the state after the transition. The webhook's slot is given back, and while the breaker
# is closed the parked webhooks that fit under the cap are made due.
_RECORD = _SLOTS_FN + """
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
                 'probe_until', 0, 'closed_at', now)
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
  if opened then
    redis.call('ZADD', KEYS[3], now, name)
  elseif after == 'closed' then
    redis.call('ZREM', KEYS[3], name)
  end
end
if KEYS[4] then
  redis.call('ZREM', KEYS[4], ARGV[7])
  if after == 'closed' then
    release(KEYS[1], KEYS[4], KEYS[5], KEYS[6], now, tonumber(ARGV[8]), tonumber(ARGV[9]),
            ARGV[10], 64)
  end
end
return after
"""

# A slot given back without a result (the attempt was refused before anything was sent).
# KEYS: breaker hash, slots, parked, due. ARGV: webhook id, now, cap, ramp, reserve until.
_GIVE_BACK = _SLOTS_FN + """
redis.call('ZREM', KEYS[2], ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]),
          tonumber(ARGV[4]), ARGV[5], 64)
end
return 1
"""

# The sweeper's pass over parked webhooks: destinations whose look-again time is up get the
# releases they would have had from finishing deliveries, and, while the breaker is open past its
# reset timeout (or half-open with a lapsed probe), one webhook to carry the probe. Webhooks
# parked since before the cutoff are made due whatever the state: one whose breaker is still
# open is then dead-lettered by its worker (it waited too long), one waiting for a slot parks
# again at the back.
# KEYS: parked index, due. ARGV: now, most destinations, cap, ramp, reserve until, look again at,
# reset timeout, breaker prefix, slots prefix, parked prefix, cutoff.
# Returns how many webhooks were made due.
_SWEEP_PARKED = _SLOTS_FN + """
local now = tonumber(ARGV[1])
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, name in ipairs(names) do
  local parked = ARGV[10] .. name
  local overdue = redis.call('ZRANGEBYSCORE', parked, '-inf', '(' .. ARGV[11], 'LIMIT', 0, 100)
  for _, id in ipairs(overdue) do
    redis.call('ZREM', parked, id)
    redis.call('ZADD', KEYS[2], now, id)
    moved = moved + 1
  end
  if redis.call('EXISTS', parked) == 0 then
    redis.call('ZREM', KEYS[1], name)
  else
    local breaker = ARGV[8] .. name
    local state = redis.call('HGET', breaker, 'state') or 'closed'
    if state == 'closed' then
      moved = moved + release(breaker, ARGV[9] .. name, parked, KEYS[2], now, tonumber(ARGV[3]),
                              tonumber(ARGV[4]), ARGV[5], 500)
    else
      local ready = false
      if state == 'open' then
        ready = now >= tonumber(redis.call('HGET', breaker, 'opened_at') or '0') + tonumber(ARGV[7])
      else
        ready = now >= tonumber(redis.call('HGET', breaker, 'probe_until') or '0')
      end
      if ready then
        local popped = redis.call('ZPOPMIN', parked, 1)
        if #popped > 0 then
          redis.call('ZADD', KEYS[2], now, popped[1])
          moved = moved + 1
        end
      end
    end
    if redis.call('EXISTS', parked) == 1 then
      redis.call('ZADD', KEYS[1], ARGV[6], name)
    else
      redis.call('ZREM', KEYS[1], name)
    end
  end
end
return moved
"""


@dataclass(frozen=True)
class SlotPolicy:
    """The fleet-wide cap on requests in flight per destination.

    ``cap`` 0 means none. After a breaker closes again, the cap ramps up from one, doubling
    every ``ramp_seconds``. A slot lapses ``lease`` seconds after it was taken (a worker that
    died holding it); one reserved for a parked webhook being made due lapses after ``reserve``
    seconds. Parked webhooks are kept ``parked_ttl`` seconds at most and looked at again by the
    sweeper every ``recheck`` seconds.
    """

    cap: int = 0
    ramp_seconds: float = 1.0
    lease: float = 30.0
    reserve: float = 10.0
    parked_ttl: int = 604_800
    recheck: float = 1.0
    max_wait: float = 3600.0


class BreakerStore:
    """Fleet-wide breaker state in Redis."""

    def __init__(
        self, client: redis.Redis, *, threshold: int, reset_timeout: float, probe_lease: float,
        idle_ttl: float = DEFAULT_IDLE_TTL, slots: SlotPolicy | None = None,
    ) -> None:
        self._r = client
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.probe_lease = probe_lease
        # Seconds a breaker is kept after its last result, whatever its state.
        self.idle_ttl = idle_ttl
        self.slots = slots or SlotPolicy()
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)
        self._give_back = client.register_script(_GIVE_BACK)
        self._sweep_parked = client.register_script(_SWEEP_PARKED)

    def acquire(self, destination: str, now: float | None = None,
                webhook_id: str | None = None) -> tuple[BreakerDecision, float]:
        """May a request go to ``destination``? (allow | probe | deny | parked, seconds to wait).

        Given the ``webhook_id`` being attempted (and a cap), the request also takes one of the
        destination's slots, or the webhook is parked until one frees."""
        now = time.time() if now is None else now
        decision, seconds = self._acquire(
            keys=self._acquire_keys(destination, webhook_id),
            args=self._acquire_args(destination, now, webhook_id))
        return BreakerDecision(_text(decision)), float(seconds)

    def record(
        self, destination: str, result: BreakerResult, *, was_probe: bool,
        now: float | None = None, pipe: Any = None, webhook_id: str | None = None,
    ) -> str:
        """Feed one result (success | failure | neutral) into the breaker and give back the
        webhook's slot; returns its state (or, given ``pipe``, queues the update there and
        returns "")."""
        now = time.time() if now is None else now
        reply = self._record(
            keys=self._keys(destination, webhook_id),
            args=self._args(destination, result, was_probe, now, webhook_id),
            client=pipe,
        )
        return "" if pipe is not None else str(reply)

    def give_back(self, destination: str, webhook_id: str, *, now: float | None = None,
                  pipe: Any = None) -> None:
        """Return a slot taken for an attempt that sent nothing (it was refused)."""
        if self.slots.cap <= 0:
            return
        now = time.time() if now is None else now
        self._give_back(
            keys=[keys.breaker_key(destination), keys.inflight_key(destination),
                  keys.parked_key(destination), keys.DUE_INDEX],
            args=[webhook_id, repr(now), self.slots.cap, self.slots.ramp_seconds,
                  repr(now + self.slots.reserve)],
            client=pipe)

    def sweep_parked(self, *, now: float | None = None, limit: int = 100) -> int:
        """Make due the parked webhooks that slot releases missed, a probe's carrier where a
        breaker may half-open, and those parked too long; returns how many."""
        now = time.time() if now is None else now
        return int(self._sweep_parked(
            keys=[keys.PARKED_INDEX, keys.DUE_INDEX],
            args=[repr(now), limit, self.slots.cap, self.slots.ramp_seconds,
                  repr(now + self.slots.reserve), repr(now + self.slots.recheck),
                  self.reset_timeout, keys.BREAKER_PREFIX, keys.INFLIGHT_PREFIX,
                  keys.PARKED_PREFIX, repr(now - self.slots.max_wait)]))

    def parked(self, limit: int = 1000) -> dict[str, int]:
        """Webhooks parked per destination (those with any; at most ``limit`` destinations)."""
        names: list[str] = self._r.zrange(keys.PARKED_INDEX, 0, limit - 1)  # type: ignore[assignment]
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.zcard(keys.parked_key(name))
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True) if n}

    def in_flight(self, destination: str, now: float | None = None) -> int:
        """Slots of ``destination`` held now (lapsed ones not counted)."""
        now = time.time() if now is None else now
        return int(self._r.zcount(keys.inflight_key(destination), repr(now), "+inf"))  # type: ignore[arg-type]

    def acquire_on(self, pipe: Any, destination: str, now: float,
                   webhook_id: str | None = None) -> None:
        """Queue ``acquire`` on a pipeline; read the reply with ``acquired``."""
        self._acquire(keys=self._acquire_keys(destination, webhook_id),
                      args=self._acquire_args(destination, now, webhook_id), client=pipe)

    def _acquire_keys(self, destination: str, webhook_id: str | None) -> list[str]:
        if webhook_id is None:
            return [keys.breaker_key(destination)]
        return [keys.breaker_key(destination), keys.inflight_key(destination),
                keys.parked_key(destination), keys.PARKED_INDEX, keys.LEASE_INDEX,
                keys.webhook_key(webhook_id)]

    def _acquire_args(self, destination: str, now: float, webhook_id: str | None) -> list[Any]:
        # While a probe is out, the others look again this often (not after its whole lease).
        recheck = max(2.0, self.reset_timeout / 10)
        args: list[Any] = [repr(now), self.reset_timeout, self.probe_lease, recheck]
        if webhook_id is not None:
            p = self.slots
            args += [webhook_id, p.cap, repr(now + p.lease), p.ramp_seconds, destination,
                     p.parked_ttl, p.recheck]
        return args

    @staticmethod
    def acquired(reply: Any) -> tuple[BreakerDecision, float]:
        """The (decision, seconds to wait) of a queued ``acquire``'s reply."""
        decision, seconds = reply
        return BreakerDecision(_text(decision)), float(seconds)

    @property
    def scripts(self) -> list[Any]:
        """The Lua scripts (an asyncio pipeline needs them loaded before use)."""
        return [self._acquire, self._record, self._give_back]

    def _keys(self, destination: str, webhook_id: str | None = None) -> list[str]:
        out = [keys.breaker_key(destination), keys.BREAKER_INDEX, keys.BREAKER_NOT_CLOSED_INDEX]
        if webhook_id is not None:
            out += [keys.inflight_key(destination), keys.parked_key(destination), keys.DUE_INDEX]
        return out

    def _args(self, destination: str, result: BreakerResult, was_probe: bool,
              now: float, webhook_id: str | None = None) -> list[str | int | float]:
        args: list[str | int | float] = [
            repr(now), str(result), self.threshold, destination, "1" if was_probe else "0",
            self.idle_ttl]
        if webhook_id is not None:
            args += [webhook_id, self.slots.cap, self.slots.ramp_seconds,
                     repr(now + self.slots.reserve)]
        return args

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
        # Webhooks parked while it was open go on the next sweep, not at the reopen time.
        pipe.zadd(keys.PARKED_INDEX, {destination: now}, xx=True)
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

    # A tenant's breaker listing reads at most this many of its most recent destinations.
    tenant_destinations_read = 1000

    def tenant_page(self, tenant: str, *, offset: int, limit: int, state: str | None = None,
                    now: float | None = None) -> tuple[list[BreakerState], int, dict[str, int]]:
        """(breakers, how many match, counts by state) of the destinations ``tenant`` has sent
        to (its most recent ``tenant_destinations_read``; those unused for ``idle_ttl`` leave
        its index), in ``page``'s order."""
        now = time.time() if now is None else now
        index = keys.tenant_destinations(tenant)
        self._r.zremrangebyscore(index, "-inf", f"({now - self.idle_ttl!r}")
        names: list[str] = self._r.zrevrange(  # type: ignore[assignment]
            index, 0, self.tenant_destinations_read - 1)
        known = self._read(names, now)
        counts = {"closed": 0, "open": 0, "half_open": 0}
        for b in known:
            counts[b.state] = counts.get(b.state, 0) + 1
        if state is None:
            chosen = sorted(known, key=lambda b: b.updated_at or 0.0, reverse=True)
        else:
            wanted = {"open": {"open"}, "half_open": {"half_open"},
                      "not_closed": {"open", "half_open"}}[state]
            chosen = sorted((b for b in known if b.state in wanted),
                            key=lambda b: b.opened_at or 0.0, reverse=True)
        return chosen[offset:offset + limit], len(chosen), counts

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
