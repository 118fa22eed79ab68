"""Durable delivery state: the envelope of every live webhook, its lease, and when it is due.

The record in Redis is the truth and a queue message only a signal that a webhook is due. A
webhook that is not settled is in exactly one of three sorted sets:

- ``due`` (score: when to try next): a retry's backoff;
- ``leased`` (score: when the lease lapses): a signal is on the queue, or a worker holds it;
- ``parked`` of its destination (score: when it was parked): the destination's breaker is open,
  or it is at its cap of requests in flight (``store.breakers`` lets parked webhooks go);

or, before its first signal, in the fair backlog (a signal waiting for room on the short
delivery list, in an order that lets tenants take turns: see ``_REFILL_FN``).

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

# Fair shares: signals that found the delivery list at its depth (or other signals already
# waiting) wait in the fair backlog, scored by virtual time: a tenant's next signal is tagged one
# past the later of its own last tag and the clock (the tag of the last signal let out), so a
# tenant that just arrived is next in line however long another tenant's backlog is, and
# tenants with backlogs take turns. A backlogged webhook is in none of due, leased or parked: the
# backlog itself is its durable place. ``refill`` moves signals, lowest tag first, onto the list
# until it holds ``target``, each with its webhook leased (a signal lease) in the same step, as
# the accept script does for a signal it pushes at once. Members are the signal message, a
# newline, and the webhook id (a message is JSON, which has no raw newline).
# refill(queue, backlog, clock, tags, leased, target, now, signal lease until, webhook prefix)
_REFILL_FN = """
local function refill(queue, backlog, clock_key, tags_key, leased, target, now, signal_until,
                      prefix)
  local room = target - redis.call('LLEN', queue)
  if room <= 0 then
    return 0
  end
  local popped = redis.call('ZPOPMIN', backlog, room)
  if #popped == 0 then
    return 0
  end
  for i = 1, #popped, 2 do
    local member = popped[i]
    local cut = string.find(member, '\\n', 1, true)
    local id = string.sub(member, cut + 1)
    local h = prefix .. id
    if redis.call('EXISTS', h) == 1 then
      redis.call('HSET', h, 'signalled_at', now)
      redis.call('ZADD', leased, signal_until, id)
      redis.call('LPUSH', queue, string.sub(member, 1, cut - 1))
    end
  end
  redis.call('SET', clock_key, popped[#popped])
  if redis.call('EXISTS', backlog) == 0 then
    -- every tag is behind the clock now: the tags say nothing more
    redis.call('DEL', tags_key)
  end
  return #popped / 2
end
"""

# claim(id, hash, status key, due, leased, mark (nil: taken from the due set, not signalled),
#       now, lease until) -> {state, env, runs}
_CLAIM_FN = """
local function claim(id, h, sk, due_key, leased_key, mark_key, now, lease_until, live_prefix)
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
      local tag = redis.call('HGET', h, 'tenant')
      if tag then
        redis.call('ZREM', live_prefix .. tag, id)
      end
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

# KEYS: webhook hash, status record, due, leased, claimed-signal mark, queue list, fair backlog,
# fair clock, fair tags. ARGV: id, now, lease until, tenant live prefix, refill target, signal
# lease until, webhook prefix. A Celery thread that runs deliveries itself (no engine) tops the
# list up from the fair backlog here, as the engine's take does.
_CLAIM = _REFILL_FN + _CLAIM_FN + """
local r = claim(ARGV[1], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[3], ARGV[4])
refill(KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[4], tonumber(ARGV[5]), ARGV[2], ARGV[6], ARGV[7])
return r
"""

# Claim up to ARGV[1] webhooks, in this order: those a Celery thread handed to this engine,
# then up to half of the room left from those due now in the due set (retries, webhooks a
# destination's free slot let go: no signal needed), then signals popped off the delivery queue,
# all in one script: a signal is never off the list without its webhook being leased (kombu's
# BRPOP has that gap; this has not). A message without a ``webhook_id`` header (a task from
# before durable delivery, or not ours) is pushed back to the far end for the Celery consumer.
# After the list, the fair backlog (lowest tag first); the list is left topped up to the fair
# depth.
# KEYS: queue list, due, leased, mark, handed list, fair backlog, fair clock, fair tags.
# ARGV: n, now, lease until, webhook prefix, status prefix, tenant live prefix, fair depth,
# signal lease until. Returns flat quadruples: state, webhook id, envelope (or ''), runs.
_TAKE = _REFILL_FN + _CLAIM_FN + """
local out = {}
local n = tonumber(ARGV[1])
local function take(id, mark)
  local r = claim(id, ARGV[4] .. id, ARGV[5] .. id, KEYS[2], KEYS[3], mark, ARGV[2], ARGV[3],
                  ARGV[6])
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
local popped = redis.call('RPOP', KEYS[1], room) or {}
for _, raw in ipairs(popped) do
  local ok, msg = pcall(cjson.decode, raw)
  local id = nil
  if ok and type(msg) == 'table' and type(msg['headers']) == 'table' then
    id = msg['headers']['webhook_id']
  end
  if type(id) ~= 'string' then
    redis.call('LPUSH', KEYS[1], raw)
  else
    take(id, KEYS[4])
  end
end
-- The list is empty and there is still room: the next signals, lowest tag first, come from the
-- backlog. Pushing them onto the list to pop them again in this same script would change nothing
-- anyone can see (no client runs in between), so they are claimed where they are, as signals
-- sent now (the claimed-signal mark moves as if popped). Then the list is topped up to the depth.
room = n - #out / 4
if room > 0 then
  local backlogged = redis.call('ZPOPMIN', KEYS[6], room)
  for i = 1, #backlogged, 2 do
    local member = backlogged[i]
    local id = string.sub(member, string.find(member, '\\n', 1, true) + 1)
    if redis.call('EXISTS', ARGV[4] .. id) == 1 then
      redis.call('HSET', ARGV[4] .. id, 'signalled_at', ARGV[2])
    end
    take(id, KEYS[4])
  end
  if #backlogged > 0 then
    redis.call('SET', KEYS[7], backlogged[#backlogged])
    if redis.call('EXISTS', KEYS[6]) == 0 then
      redis.call('DEL', KEYS[8])
    end
  end
end
refill(KEYS[1], KEYS[6], KEYS[7], KEYS[8], KEYS[3], tonumber(ARGV[7]), ARGV[2], ARGV[8], ARGV[4])
return out
"""

# KEYS: due, leased, the delivery queue's list, claimed-signal mark, fair backlog, fair clock,
# fair tags. ARGV: now, signal lease until, limit, webhook key prefix, refill target.
# Returns ids to signal: first the due ones, then those whose lease lapsed (count in slot 1).
# A lapsed lease whose webhook a worker held is recovered at once (the worker died). One that was
# only signalled is recovered when its signal cannot still be waiting: the queue is empty, or a
# signal sent after it was already claimed (the list is FIFO). Otherwise it is looked at again a
# signal timeout later, so a long backlog is not signalled twice over.
# First the list is topped up from the fair backlog (when no engine took from it since the last
# sweep, say in a fleet of Celery threads only); backlogged webhooks are never in ``leased``, so
# a long backlog is never taken for lost signals.
_SWEEP = _REFILL_FN + """
refill(KEYS[3], KEYS[5], KEYS[6], KEYS[7], KEYS[2], tonumber(ARGV[5]), ARGV[1], ARGV[2], ARGV[4])
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

# A settled webhook (delivered or dead-lettered): its final status record (PUT_STATUS_FN), and
# nothing of it left here (envelope hash, tenant's live set, due and lease indexes).
# KEYS: record, new-status index, webhook hash, tenant live set, due, leased.
# ARGV: as PUT_STATUS_FN takes them (json, ttl, score, id, status, index prefix, tenant).
_FINISH = PUT_STATUS_FN + """
put_status(KEYS[1], KEYS[2], ARGV[6], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7])
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('ZREM', KEYS[6], ARGV[4])
return 1
"""

# A tenant's cap and rate: nil when a submission passes (its rate's arrival time is then
# advanced), or the refusal {code, seconds}. Entries of the tenant's live set older than the
# envelope's TTL (records that expired unsettled) are not counted (and pruned by the accept
# script after its first write: a script's first write command is the one Redis refuses at
# maxmemory, and any write before it, even one that changes nothing, lets every later one pass).
_LIMITS_FN = """
local function tenant_limits(live, rate_key, now, ttl, cap, rate, burst)
  if cap > 0 and redis.call('ZCOUNT', live, string.format('%.6f', now - ttl), '+inf') >= cap then
    return {-1, '0'}
  end
  if rate > 0 then
    local tat = math.max(tonumber(redis.call('GET', rate_key) or '0'), now)
    local ahead = tat - now - (burst - 1) / rate
    if ahead > 0.000001 then
      return {-2, string.format('%.6f', ahead)}
    end
    tat = tat + 1 / rate
    redis.call('SET', rate_key, string.format('%.6f', tat), 'PX',
               math.ceil((tat - now) * 1000) + 1000)
  end
  return nil
end
"""

# A report's admission (its webhook comes later, from the worker): the tenant's cap and rate
# only. KEYS: tenant live set, tenant rate. ARGV: now, ttl, cap, rate, burst.
_ADMIT = _LIMITS_FN + """
return tenant_limits(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                     tonumber(ARGV[4]), tonumber(ARGV[5])) or {1, '0'}
"""

# Accepting a webhook is one script: its `pending` status record, its delivery state (envelope,
# signal lease) and its signal, written together or not at all; refused, with nothing written,
# when the delivery queue (list and fair backlog) already holds `most` signals (the API sheds load
# with a 503), when the tenant already has `cap` live webhooks, or when it submits faster than
# its rate allows (GCRA: a burst of `burst`, then one every 1/rate seconds; the wait is returned).
# The decision is ``compliance.delivery.fairshare.decide``'s (tested against this script). The
# signal goes straight onto the list while the list is below the fair depth and no signal waits
# in the backlog; otherwise it waits in the backlog with the tenant's next virtual tag.
# KEYS: status record, pending index, webhook hash, leased, due, queue list, tenant live set,
# tenant rate, fair backlog, fair tags, fair clock.
# ARGV: record, status ttl, score, id, index prefix, envelope, hash ttl, now, signal lease until,
# signal message ('' for none), most queued (0: no limit), tenant ('' for the default tenant),
# destination origin, tenant tag (in the fair-share keys: `-` for the default tenant), cap (0:
# none), rate per second (0: none), burst, fair depth (0: no backlog). A named tenant's webhook is
# also indexed under that tenant (its status index, in put_status, and the destinations it has
# sent to). Returns {code, seconds}: 1 accepted, 0 queue full, -1 tenant at its cap, -2 tenant
# over its rate (seconds: until a submission would pass).
_ACCEPT = PUT_STATUS_FN + _LIMITS_FN + """
local now = tonumber(ARGV[8])
local listed = redis.call('LLEN', KEYS[6])
local most = tonumber(ARGV[11])
if most > 0 then
  local queued = listed + redis.call('ZCARD', KEYS[9])
  for _, priority in ipairs({'3', '6', '9'}) do
    queued = queued + redis.call('LLEN', KEYS[6] .. '\\6\\22' .. priority)
  end
  if queued >= most then
    return {0, '0'}
  end
end
local refused = tenant_limits(KEYS[7], KEYS[8], now, tonumber(ARGV[7]), tonumber(ARGV[15]),
                              tonumber(ARGV[16]), tonumber(ARGV[17]))
if refused then
  return refused
end
put_status(KEYS[1], KEYS[2], ARGV[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'pending', ARGV[12])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. string.format('%.6f', now - tonumber(ARGV[7])))
if ARGV[12] ~= '' and ARGV[13] ~= '' then
  redis.call('ZADD', '""" + keys.TENANT_DESTINATIONS_PREFIX + """' .. ARGV[12], ARGV[8], ARGV[13])
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'env', ARGV[6], 'signalled_at', ARGV[8], 'tenant', ARGV[14])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('ZADD', KEYS[7], now, ARGV[4])
redis.call('EXPIRE', KEYS[7], tonumber(ARGV[7]))
local depth = tonumber(ARGV[18])
if ARGV[10] ~= '' and depth > 0 and (listed >= depth or redis.call('EXISTS', KEYS[9]) == 1) then
  local clock = tonumber(redis.call('GET', KEYS[11]) or '0')
  local last = tonumber(redis.call('HGET', KEYS[10], ARGV[14]) or '0')
  local tag = math.max(clock, last) + 1
  redis.call('HSET', KEYS[10], ARGV[14], tag)
  redis.call('ZADD', KEYS[9], tag, ARGV[10] .. '\\n' .. ARGV[4])
  return {1, '0'}
end
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[4])
if ARGV[10] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[10])
end
return {1, '0'}
"""


class Admission(StrEnum):
    """What accepting a webhook found."""

    ACCEPTED = "accepted"
    OVERLOADED = "overloaded"  # the delivery queue holds ``most_queued`` signals: 503
    TENANT_CAP = "tenant_cap"  # the tenant has ``cap`` live webhooks: 429
    TENANT_RATE = "tenant_rate"  # the tenant submits faster than its rate: 429


_ADMISSIONS = {1: Admission.ACCEPTED, 0: Admission.OVERLOADED, -1: Admission.TENANT_CAP,
               -2: Admission.TENANT_RATE}


@dataclass(frozen=True)
class Verdict:
    """An admission and, when refused for the rate, the seconds until one would pass."""

    admission: Admission
    wait: float = 0.0

    @property
    def accepted(self) -> bool:
        """Written: the 202 may go out."""
        return self.admission is Admission.ACCEPTED


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
    tenant: str | None = None  # None: the default tenant; a named one's webhook is indexed under it
    origin: str = ""  # its destination (scheme://host:port), indexed for a named tenant
    cap: int = 0  # refuse when the tenant has this many live webhooks (0: never)
    rate: float = 0.0  # the tenant's submissions per second (0: unlimited)
    burst: int = 1  # submissions the rate lets through at once


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
    backlogged: int = 0  # signals in the fair backlog, waiting for room on the delivery list


class ScheduleStore:
    """Live webhooks' envelopes, leases and due times."""

    def __init__(self, client: redis.Redis, *, queue_key: str, fair_depth: int = 0,
                 refill_target: int = 500) -> None:
        self._r = client
        self._queue_key = queue_key
        # Signals the delivery list holds before new ones wait in the fair backlog (0: none
        # wait). A sweep or a Celery thread's claim tops the list up to that depth (with none,
        # to ``refill_target``: a backlog left from before fairness was turned off drains).
        self.fair_depth = fair_depth
        self._refill_target = fair_depth if fair_depth > 0 else refill_target
        self._claim = client.register_script(_CLAIM)
        self._sweep = client.register_script(_SWEEP)
        self._accept = client.register_script(_ACCEPT)
        self._admit = client.register_script(_ADMIT)
        self._hand_over = client.register_script(_HAND_OVER)
        self._finish = client.register_script(_FINISH)
        self._take_scripts: dict[int, Any] = {}
        self._accept_scripts: dict[int, Any] = {}

    def accept(self, intake: Intake) -> Verdict:
        """A new (or replayed) webhook: record, delivery state and signal in one script (one
        round trip), unless the queue, the tenant's cap or its rate refuses it."""
        return _verdict(self._accept(keys=self._accept_keys(intake),
                                     args=self._accept_args(intake)))

    async def accept_async(self, aclient: Any, intake: Intake) -> Verdict:
        """``accept`` on an asyncio client (the API's event loop, no thread)."""
        script = self._accept_scripts.get(id(aclient))
        if script is None:
            script = self._accept_scripts[id(aclient)] = aclient.register_script(_ACCEPT)
        return _verdict(await script(keys=self._accept_keys(intake),
                                     args=self._accept_args(intake)))

    def admit(self, tenant: str | None, *, now: float, ttl: int, cap: int, rate: float,
              burst: int) -> Verdict:
        """Would ``tenant``'s cap and rate let one more submission in? (A report, whose webhook
        is accepted later by the worker; a pass uses up its share of the rate.)"""
        return _verdict(self._admit(
            keys=[keys.tenant_live_key(tenant), keys.tenant_rate_key(tenant)],
            args=[repr(now), ttl, cap, repr(float(rate)), max(1, burst)]))

    def _accept_keys(self, intake: Intake) -> list[str]:
        return [keys.status_key(intake.webhook_id), keys.status_index("pending"),
                keys.webhook_key(intake.webhook_id), keys.LEASE_INDEX, keys.DUE_INDEX,
                self._queue_key, keys.tenant_live_key(intake.tenant),
                keys.tenant_rate_key(intake.tenant), keys.FAIR_BACKLOG, keys.FAIR_TAGS,
                keys.FAIR_CLOCK]

    def _accept_args(self, intake: Intake) -> list[str | int]:
        return [intake.record, intake.status_ttl, repr(intake.score), intake.webhook_id,
                keys.STATUS_INDEX_BY, intake.envelope, intake.ttl, repr(intake.now),
                repr(intake.signal_until), intake.signal or "", intake.most_queued,
                intake.tenant or "", intake.origin, keys.tenant_tag(intake.tenant), intake.cap,
                repr(float(intake.rate)), max(1, intake.burst), self.fair_depth]

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

    def finish(self, pipe: Any, put: tuple[list[str], list[str | int]], tenant: str | None, *,
               loaded: bool) -> None:
        """The webhook is settled (delivered or dead-lettered): its final status record is
        written (``put``: ``StatusStore.put_call``), nothing of it stays here, and it no longer
        counts against its tenant's cap; one script call on ``pipe``. ``loaded``: the pipeline
        loads ``scripts`` before it runs (the delivery engine's does), so the call goes as
        EVALSHA; otherwise as EVAL with the text (no SCRIPT EXISTS round trip of its own)."""
        status_keys, status_args = put
        webhook_id = str(status_args[3])
        call_keys = [*status_keys, keys.webhook_key(webhook_id), keys.tenant_live_key(tenant),
                     keys.DUE_INDEX, keys.LEASE_INDEX]
        if loaded:
            self._finish(keys=call_keys, args=status_args, client=pipe)
        else:
            pipe.eval(_FINISH, len(call_keys), *call_keys, *status_args)

    def hand_over(self, webhook_id: str, *, now: float) -> bool:
        """Give a signalled webhook to the delivery engine (its take reads the handed list
        first); False when it is settled, held, or scheduled later."""
        return bool(self._hand_over(
            keys=[keys.webhook_key(webhook_id), keys.LEASE_INDEX, keys.DUE_INDEX,
                  keys.HANDED_LIST],
            args=[webhook_id, repr(now)]))

    def claim(self, webhook_id: str, *, now: float, lease_until: float,
              signal_timeout: float = 300.0) -> Claim:
        """Take a signalled webhook for one attempt (atomic)."""
        reply = self._claim(
            keys=[keys.webhook_key(webhook_id), keys.status_key(webhook_id), keys.DUE_INDEX,
                  keys.LEASE_INDEX, keys.CLAIMED_SIGNAL_MARK, self._queue_key, keys.FAIR_BACKLOG,
                  keys.FAIR_CLOCK, keys.FAIR_TAGS],
            args=[webhook_id, repr(now), repr(lease_until), keys.TENANT_LIVE_PREFIX,
                  self._refill_target, repr(now + signal_timeout), keys.WEBHOOK_PREFIX])
        state = ClaimState(_text(reply[0]))
        if state is ClaimState.CLAIMED:
            return Claim(state, _text(reply[1]), int(reply[2]))
        return Claim(state)

    async def take(self, aclient: Any, *, count: int, now: float, lease_until: float,
                   signal_until: float) -> list[tuple[str, Claim]]:
        """Claim up to ``count`` webhooks: handed ones, due ones (up to half), signals popped off
        the queue, then the fair backlog's next; the list is left at the fair depth (asyncio
        client, one round trip)."""
        reply = await self._take_async(aclient)(
            keys=[self._queue_key, keys.DUE_INDEX, keys.LEASE_INDEX, keys.CLAIMED_SIGNAL_MARK,
                  keys.HANDED_LIST, keys.FAIR_BACKLOG, keys.FAIR_CLOCK, keys.FAIR_TAGS],
            args=[count, repr(now), repr(lease_until), keys.WEBHOOK_PREFIX, keys.STATUS_PREFIX,
                  keys.TENANT_LIVE_PREFIX, self.fair_depth, repr(signal_until)])
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
        return [self._claim, self._sweep, self._finish]

    def sweep(self, *, now: float, signal_until: float, limit: int) -> Sweep:
        """Take due and lapsed webhooks for signalling; safe in any number of processes at once."""
        reply = self._sweep(keys=[keys.DUE_INDEX, keys.LEASE_INDEX, self._queue_key,
                                  keys.CLAIMED_SIGNAL_MARK, keys.FAIR_BACKLOG, keys.FAIR_CLOCK,
                                  keys.FAIR_TAGS],
                            args=[repr(now), repr(signal_until), limit, keys.WEBHOOK_PREFIX,
                                  self._refill_target])
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
        """Scheduled (and due now), leased and backlogged webhooks."""
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(keys.DUE_INDEX)
        pipe.zcount(keys.DUE_INDEX, "-inf", repr(now))
        pipe.zcard(keys.LEASE_INDEX)
        pipe.zcard(keys.FAIR_BACKLOG)
        scheduled, due_now, leased, backlogged = pipe.execute()
        return ScheduleCounts(int(scheduled), int(due_now), int(leased), int(backlogged))

    def backlogged(self) -> int:
        """Signals waiting in the fair backlog for room on the delivery list."""
        return int(self._r.zcard(keys.FAIR_BACKLOG))  # type: ignore[arg-type]

    def live(self, tenant: str | None) -> int:
        """A tenant's live (queued or scheduled) webhooks, as its cap counts them."""
        return int(self._r.zcard(keys.tenant_live_key(tenant)))  # type: ignore[arg-type]


def _verdict(reply: Any) -> Verdict:
    code, wait = reply
    return Verdict(_ADMISSIONS[int(code)], float(_text(wait)))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
