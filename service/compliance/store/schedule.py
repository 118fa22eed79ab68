"""Durable delivery state: the envelope of every live webhook, its lease, and when it is due.

The record in Redis is the truth and a queue message only a signal that a webhook is due. A
webhook that is not settled is in exactly one of three sorted sets:

- ``due`` (score: when to try next): a retry's backoff;
- ``leased`` (score: when the lease lapses): a signal is on the queue, or a worker holds it;
- ``parked`` of its destination (score: when it was parked): the destination's breaker is open,
  or it is at its cap of requests in flight (``store.breakers`` lets parked webhooks go).

The sweeper moves due webhooks to ``leased`` and signals them, and signals again every webhook
whose lease lapsed (its message was lost, or its worker died). A worker takes a webhook with
``claim``, which refuses one that is settled, not yet due, or held by another worker, so a
duplicate signal costs a round trip and never a second send.

State changes that go with a status record are written by the caller in one MULTI/EXEC
(``pipeline``), so the status, the envelope and the schedule never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from compliance.store import keys
from compliance.store.statuses import PUT_STATUS_FN

# claim(id, hash, status key, due, leased, mark (nil: taken from the due set, not signalled),
#       now, lease until) -> {state, env, runs}
_CLAIM_FN = """
local function claim(id, h, sk, due_key, leased_key, mark_key, now, lease_until)
  local env = redis.call('HGET', h, 'env')
  if not env then
    redis.call('ZREM', due_key, id)
    redis.call('ZREM', leased_key, id)
    return {'missing', '', '0'}
  end
  local raw = redis.call('GET', sk)
  if raw then
    local ok, rec = pcall(cjson.decode, raw)
    if ok and (rec['status'] == 'delivered' or rec['status'] == 'failed') then
      redis.call('DEL', h)
      redis.call('ZREM', due_key, id)
      redis.call('ZREM', leased_key, id)
      return {'settled', '', '0'}
    end
  end
  local due = redis.call('ZSCORE', due_key, id)
  if due and tonumber(due) > tonumber(now) then
    return {'not_due', '', '0'}
  end
  local held = redis.call('HGET', h, 'held_until')
  if held and tonumber(held) > tonumber(now) then
    return {'busy', '', '0'}
  end
  local runs = redis.call('HINCRBY', h, 'runs', 1)
  redis.call('HSET', h, 'held_until', lease_until)
  local sent = mark_key and redis.call('HGET', h, 'signalled_at')
  if sent then
    local mark = redis.call('GET', mark_key)
    if (not mark) or tonumber(sent) > tonumber(mark) then
      redis.call('SET', mark_key, sent)
    end
  end
  redis.call('ZREM', due_key, id)
  redis.call('ZADD', leased_key, lease_until, id)
  return {'claimed', env, tostring(runs)}
end
"""

# KEYS: webhook hash, status record, due, leased, claimed-signal mark. ARGV: id, now, lease until.
_CLAIM = _CLAIM_FN + """
return claim(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3])
"""

# Claim up to ARGV[1] webhooks, in this order: those a Celery thread handed to this engine,
# then up to half of the room left from those due now in the due set (retries, webhooks a
# destination's free slot let go: no signal needed), then signals popped off the delivery queue,
# all in one script: a signal is never off the list without its webhook being leased (kombu's
# BRPOP has that gap; this has not). A message without a ``webhook_id`` header (a task from
# before durable delivery, or not ours) is pushed back to the far end for the Celery consumer.
# KEYS: queue list, due, leased, mark, handed list. ARGV: n, now, lease until, webhook prefix,
# status prefix. Returns flat quadruples: state, webhook id, envelope (or ''), runs.
_TAKE = _CLAIM_FN + """
local out = {}
local n = tonumber(ARGV[1])
local function take(id, mark)
  local r = claim(id, ARGV[4] .. id, ARGV[5] .. id, KEYS[2], KEYS[3], mark, ARGV[2], ARGV[3])
  table.insert(out, r[1])
  table.insert(out, id)
  table.insert(out, r[2])
  table.insert(out, r[3])
end
local handed = redis.call('LPOP', KEYS[5], n)
if handed then
  for _, id in ipairs(handed) do
    take(id, KEYS[4])
  end
end
local room = n - #out / 4
if room <= 0 then
  return out
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, math.ceil(room / 2))
for _, id in ipairs(due) do
  take(id, nil)
end
room = n - #out / 4
if room <= 0 then
  return out
end
local popped = redis.call('RPOP', KEYS[1], room)
if not popped then
  return out
end
for _, raw in ipairs(popped) do
  local ok, msg = pcall(cjson.decode, raw)
  local id = nil
  if ok and type(msg) == 'table' and type(msg['headers']) == 'table' then
    id = msg['headers']['webhook_id']
  end
  if type(id) ~= 'string' then
    redis.call('LPUSH', KEYS[1], raw)
  else
    local r = claim(id, ARGV[4] .. id, ARGV[5] .. id, KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[3])
    table.insert(out, r[1])
    table.insert(out, id)
    table.insert(out, r[2])
    table.insert(out, r[3])
  end
end
return out
"""

# KEYS: due, leased, the delivery queue's list, claimed-signal mark.
# ARGV: now, signal lease until, limit, webhook key prefix.
# Returns ids to signal: first the due ones, then those whose lease lapsed (count in slot 1).
# A lapsed lease whose webhook a worker held is recovered at once (the worker died). One that was
# only signalled is recovered when its signal cannot still be waiting: the queue is empty, or a
# signal sent after it was already claimed (the list is FIFO). Otherwise it is looked at again a
# signal timeout later, so a long backlog is not signalled twice over.
_SWEEP = """
local out = {0}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  if redis.call('EXISTS', ARGV[4] .. id) == 1 then
    redis.call('HSET', ARGV[4] .. id, 'signalled_at', ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(out, id)
  end
end
out[1] = #out - 1
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0,
                          tonumber(ARGV[3]))
local queued = redis.call('LLEN', KEYS[3])
local mark = tonumber(redis.call('GET', KEYS[4]) or '0')
for _, id in ipairs(lapsed) do
  local h = ARGV[4] .. id
  if redis.call('EXISTS', h) == 0 then
    redis.call('ZREM', KEYS[2], id)
  else
    local held = redis.call('HGET', h, 'held_until')
    local sent = tonumber(redis.call('HGET', h, 'signalled_at') or '0')
    if held or queued == 0 or mark > sent then
      redis.call('HDEL', h, 'held_until')
      redis.call('HSET', h, 'signalled_at', ARGV[1])
      table.insert(out, id)
    end
    redis.call('ZADD', KEYS[2], ARGV[2], id)
  end
end
return out
"""


# A signal that a Celery thread popped, handed to the delivery engine: the webhook's id goes on
# the engine's own list (its take reads it first), keeping its signal lease, so it still counts as
# signalled work (in flight, for the operator) and the sweeper still recovers it if no engine
# takes it. Dropped when settled (no hash), held by a live worker, or scheduled later.
# KEYS: webhook hash, leased, due, handed list. ARGV: id, now. Returns 1 when handed over.
_HAND_OVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local held = redis.call('HGET', KEYS[1], 'held_until')
if held and tonumber(held) > tonumber(ARGV[2]) then
  return 0
end
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if due and tonumber(due) > tonumber(ARGV[2]) then
  return 0
end
redis.call('RPUSH', KEYS[4], ARGV[1])
return 1
"""

# Accepting a webhook is one script: its `pending` status record, its delivery state (envelope,
# signal lease) and its signal on the queue, written together or not at all; with a limit, not
# at all while the queue already holds that many signals (the API sheds load with a 503).
# KEYS: status record, pending index, webhook hash, leased, due, queue list.
# ARGV: record, status ttl, score, id, index prefix, envelope, hash ttl, now, signal lease until,
# signal message ('' for none), most queued (0: no limit), tenant ('' for the default tenant),
# destination origin. A named tenant's webhook is also indexed under that tenant (its status
# index, in put_status, and the destinations it has sent to). Returns 1, or 0 when refused.
_ACCEPT = PUT_STATUS_FN + """
local most = tonumber(ARGV[11])
if most > 0 then
  local queued = redis.call('LLEN', KEYS[6])
  for _, priority in ipairs({'3', '6', '9'}) do
    queued = queued + redis.call('LLEN', KEYS[6] .. '\6\22' .. priority)
  end
  if queued >= most then
    return 0
  end
end
put_status(KEYS[1], KEYS[2], ARGV[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'pending', ARGV[12])
if ARGV[12] ~= '' and ARGV[13] ~= '' then
  redis.call('ZADD', '""" + keys.TENANT_DESTINATIONS_PREFIX + """' .. ARGV[12], ARGV[8], ARGV[13])
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'env', ARGV[6], 'signalled_at', ARGV[8])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[4])
if ARGV[10] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[10])
end
return 1
"""


@dataclass(frozen=True)
class Intake:
    """One webhook being accepted: what ``ScheduleStore.accept`` writes."""

    webhook_id: str
    envelope: str  # JSON
    record: str  # the `pending` status record, JSON
    score: float  # the record's index score (its time)
    status_ttl: int
    ttl: int  # of the envelope's hash
    now: float
    signal_until: float  # the signal lease: when the sweeper signals it again
    signal: str | None = None  # the queue message, or None to leave signalling to the sweeper
    most_queued: int = 0  # refuse when the queue holds this many signals (0: never)
    tenant: str | None = None  # a named tenant's webhook is indexed under it too
    origin: str = ""  # its destination (scheme://host:port), indexed for a named tenant


class ClaimState(StrEnum):
    """What ``claim`` found."""

    CLAIMED = "claimed"  # this worker holds the webhook now
    MISSING = "missing"  # no live record (expired, deleted, or delivered long ago)
    SETTLED = "settled"  # delivered or failed already: a duplicate signal
    NOT_DUE = "not_due"  # scheduled later: a stale signal; the sweeper signals it when due
    BUSY = "busy"  # another worker holds it


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``; ``envelope`` (JSON) and ``runs`` only when claimed."""

    state: ClaimState
    envelope: str | None = None
    runs: int = 0


@dataclass(frozen=True)
class Sweep:
    """Ids a sweep signalled: ``due`` of them were due, ``recovered`` had a lapsed lease."""

    ids: list[str]
    due: int

    @property
    def recovered(self) -> int:
        """Webhooks whose lease lapsed (lost signal or dead worker)."""
        return len(self.ids) - self.due


@dataclass(frozen=True)
class ScheduleCounts:
    """Queue signals apart: scheduled (due later, and due now), and signalled or in flight."""

    scheduled: int
    due_now: int
    leased: int


class ScheduleStore:
    """Live webhooks' envelopes, leases and due times."""

    def __init__(self, client: redis.Redis, *, queue_key: str) -> None:
        self._r = client
        self._queue_key = queue_key
        self._claim = client.register_script(_CLAIM)
        self._sweep = client.register_script(_SWEEP)
        self._accept = client.register_script(_ACCEPT)
        self._hand_over = client.register_script(_HAND_OVER)
        self._take_scripts: dict[int, Any] = {}
        self._accept_scripts: dict[int, Any] = {}

    def accept(self, intake: Intake) -> bool:
        """A new (or replayed) webhook: record, delivery state and signal in one script (one
        round trip); False when the queue is at ``most_queued``."""
        return bool(self._accept(keys=self._accept_keys(intake), args=self._accept_args(intake)))

    async def accept_async(self, aclient: Any, intake: Intake) -> bool:
        """``accept`` on an asyncio client (the API's event loop, no thread)."""
        script = self._accept_scripts.get(id(aclient))
        if script is None:
            script = self._accept_scripts[id(aclient)] = aclient.register_script(_ACCEPT)
        return bool(await script(keys=self._accept_keys(intake), args=self._accept_args(intake)))

    def _accept_keys(self, intake: Intake) -> list[str]:
        return [keys.status_key(intake.webhook_id), keys.status_index("pending"),
                keys.webhook_key(intake.webhook_id), keys.LEASE_INDEX, keys.DUE_INDEX,
                self._queue_key]

    @staticmethod
    def _accept_args(intake: Intake) -> list[str | int]:
        return [intake.record, intake.status_ttl, repr(intake.score), intake.webhook_id,
                keys.STATUS_INDEX_BY, intake.envelope, intake.ttl, repr(intake.now),
                repr(intake.signal_until), intake.signal or "", intake.most_queued,
                intake.tenant or "", intake.origin]

    def reschedule(self, pipe: Any, webhook_id: str, envelope: str, *, ttl: int,
                   due_at: float, reset_runs: bool = True) -> None:
        """Release the lease and try again at ``due_at`` (a retry or a deferral)."""
        key = keys.webhook_key(webhook_id)
        pipe.hset(key, "env", envelope)
        pipe.hdel(key, "held_until")
        if reset_runs:
            pipe.hdel(key, "runs")
        pipe.expire(key, ttl)
        pipe.zrem(keys.LEASE_INDEX, webhook_id)
        pipe.zadd(keys.DUE_INDEX, {webhook_id: due_at})

    def park(self, pipe: Any, webhook_id: str, envelope: str, *, destination: str, ttl: int,
             now: float, look_at: float) -> None:
        """Release the lease and wait, in order, for ``destination`` to take requests again
        (its breaker is open); the sweeper looks at the destination at ``look_at``."""
        key = keys.webhook_key(webhook_id)
        parked = keys.parked_key(destination)
        pipe.hset(key, "env", envelope)
        pipe.hdel(key, "held_until", "runs")
        pipe.expire(key, ttl)
        pipe.zrem(keys.LEASE_INDEX, webhook_id)
        pipe.zrem(keys.DUE_INDEX, webhook_id)
        pipe.zadd(parked, {webhook_id: now}, nx=True)
        pipe.expire(parked, ttl)
        pipe.zadd(keys.PARKED_INDEX, {destination: look_at}, lt=True)

    def finish(self, pipe: Any, webhook_id: str) -> None:
        """The webhook is settled (delivered or dead-lettered): nothing of it stays here."""
        pipe.delete(keys.webhook_key(webhook_id))
        pipe.zrem(keys.DUE_INDEX, webhook_id)
        pipe.zrem(keys.LEASE_INDEX, webhook_id)

    def hand_over(self, webhook_id: str, *, now: float) -> bool:
        """Give a signalled webhook to the delivery engine (its take reads the handed list
        first); False when it is settled, held, or scheduled later."""
        return bool(self._hand_over(
            keys=[keys.webhook_key(webhook_id), keys.LEASE_INDEX, keys.DUE_INDEX,
                  keys.HANDED_LIST],
            args=[webhook_id, repr(now)]))

    def claim(self, webhook_id: str, *, now: float, lease_until: float) -> Claim:
        """Take a signalled webhook for one attempt (atomic)."""
        reply = self._claim(
            keys=[keys.webhook_key(webhook_id), keys.status_key(webhook_id), keys.DUE_INDEX,
                  keys.LEASE_INDEX, keys.CLAIMED_SIGNAL_MARK],
            args=[webhook_id, repr(now), repr(lease_until)])
        state = ClaimState(_text(reply[0]))
        if state is ClaimState.CLAIMED:
            return Claim(state, _text(reply[1]), int(reply[2]))
        return Claim(state)

    async def take(self, aclient: Any, *, count: int, now: float,
                   lease_until: float) -> list[tuple[str, Claim]]:
        """Claim up to ``count`` webhooks, due ones first (up to half), then signalled ones
        popped off the queue (asyncio client, one round trip)."""
        reply = await self._take_async(aclient)(
            keys=[self._queue_key, keys.DUE_INDEX, keys.LEASE_INDEX, keys.CLAIMED_SIGNAL_MARK,
                  keys.HANDED_LIST],
            args=[count, repr(now), repr(lease_until), keys.WEBHOOK_PREFIX, keys.STATUS_PREFIX])
        out = []
        for i in range(0, len(reply), 4):
            state = ClaimState(_text(reply[i]))
            claim = (Claim(state, _text(reply[i + 2]), int(reply[i + 3]))
                     if state is ClaimState.CLAIMED else Claim(state))
            out.append((_text(reply[i + 1]), claim))
        return out

    def _take_async(self, aclient: Any) -> Any:
        script = self._take_scripts.get(id(aclient))
        if script is None:
            script = self._take_scripts[id(aclient)] = aclient.register_script(_TAKE)
        return script

    @property
    def scripts(self) -> list[Any]:
        """The Lua scripts that may run inside a pipeline (loaded before an asyncio one)."""
        return [self._claim, self._sweep]

    def sweep(self, *, now: float, signal_until: float, limit: int) -> Sweep:
        """Take due and lapsed webhooks for signalling; safe in any number of processes at once."""
        reply = self._sweep(keys=[keys.DUE_INDEX, keys.LEASE_INDEX, self._queue_key,
                                  keys.CLAIMED_SIGNAL_MARK],
                            args=[repr(now), repr(signal_until), limit, keys.WEBHOOK_PREFIX])
        return Sweep(ids=[_text(x) for x in reply[1:]], due=int(reply[0]))

    def envelope(self, webhook_id: str) -> str | None:
        """A live webhook's envelope (JSON), or None."""
        raw = self._r.hget(keys.webhook_key(webhook_id), "env")
        return None if raw is None else _text(raw)

    def due_ids(self, limit: int) -> list[str]:
        """Up to ``limit`` scheduled webhook ids, soonest first."""
        return [_text(x) for x in self._r.zrange(keys.DUE_INDEX, 0, max(0, limit - 1))]

    def envelopes(self, webhook_ids: list[str]) -> list[str | None]:
        """The envelopes (JSON) of live webhooks, None where there is none; one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for webhook_id in webhook_ids:
            pipe.hget(keys.webhook_key(webhook_id), "env")
        return [None if raw is None else _text(raw) for raw in pipe.execute()]

    def counts(self, now: float) -> ScheduleCounts:
        """Scheduled (and due now) and leased webhooks."""
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(keys.DUE_INDEX)
        pipe.zcount(keys.DUE_INDEX, "-inf", repr(now))
        pipe.zcard(keys.LEASE_INDEX)
        scheduled, due_now, leased = pipe.execute()
        return ScheduleCounts(int(scheduled), int(due_now), int(leased))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
