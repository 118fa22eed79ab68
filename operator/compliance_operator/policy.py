"""Pure scaling decisions: demand -> raw replicas -> stabilisation, max step, breaker hold.

Nothing here does I/O; every input (including the clock and the recommendation history) is an
argument, so the whole policy is a table of tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from compliance.store.records import BreakerState

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# Pod deletion cost is an int32; busy pods get their held-task count, capped well inside it.
MAX_DELETION_COST = 1_000_000


@dataclass(frozen=True)
class ScalePolicy:
    """The spec of a WorkerAutoscaler, as numbers."""

    min_replicas: int
    max_replicas: int
    target_per_replica: int
    up_window: float = 0.0
    up_max_step: int = 4
    down_window: float = 300.0
    down_max_step: int = 1
    breaker_enabled: bool = True
    open_share_threshold: float = 0.5
    backlog_share_threshold: float = 0.5


@dataclass(frozen=True)
class Observation:
    """What one poll saw."""

    now: float
    current_replicas: int
    queue_length: int
    in_flight: int
    open_breakers: int = 0
    known_breakers: int = 0
    open_backlog_share: float | None = None

    @property
    def demand(self) -> int:
        """Tasks that need a worker slot: waiting plus reserved-but-unacked."""
        return self.queue_length + self.in_flight


@dataclass(frozen=True)
class Recommendation:
    """One raw recommendation, kept for the stabilisation windows."""

    time: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    """What to do, and why (``reason`` is a condition reason, ``message`` a sentence)."""

    desired: int
    raw: int
    reason: str
    message: str
    breaker_hold: bool
    history: tuple[Recommendation, ...] = field(default_factory=tuple)

    @property
    def scales(self) -> bool:
        """True when the decision changes the replica count."""
        return self.reason in ("ScaleUp", "ScaleDown")


def clamp(value: int, low: int, high: int) -> int:
    """``value`` limited to [low, high]."""
    return max(low, min(high, value))


def raw_replicas(demand: int, *, target_per_replica: int, min_replicas: int, max_replicas: int) -> int:
    """clamp(ceil(demand / target)) — the recommendation before any smoothing."""
    return clamp(math.ceil(max(demand, 0) / target_per_replica), min_replicas, max_replicas)


def breaker_hold(policy: ScalePolicy, obs: Observation) -> str | None:
    """Why scale-up must wait for the downstream, or None.

    Extra workers cannot deliver to a destination whose breaker is open: they would only defer
    the same messages faster. Hold when enough of the known destinations are open, or when the
    sampled backlog is mostly addressed to open destinations.
    """
    if not policy.breaker_enabled or obs.open_breakers <= 0:
        return None
    if obs.known_breakers > 0:
        share = obs.open_breakers / obs.known_breakers
        if share >= policy.open_share_threshold:
            return (f"{obs.open_breakers} of {obs.known_breakers} destinations have open breakers "
                    f"({share:.0%} >= {policy.open_share_threshold:.0%})")
    backlog = obs.open_backlog_share
    if backlog is not None and backlog > 0 and backlog >= policy.backlog_share_threshold:
        return (f"{backlog:.0%} of the waiting backlog targets destinations with open breakers "
                f"(>= {policy.backlog_share_threshold:.0%})")
    return None


def decide(policy: ScalePolicy, obs: Observation, history: Sequence[Recommendation],
           observing_since: float | None = None) -> Decision:
    """Desired replicas from demand, smoothed like the HPA's behaviour, held by breakers.

    * scale up to the LOWEST recommendation in the scale-up window (demand must persist),
      by at most ``up_max_step``; a breaker hold caps it at the current count;
    * scale down to the HIGHEST recommendation in the scale-down window (quiet must persist),
      by at most ``down_max_step``;
    * min/max always win (a Deployment outside them is brought inside at once).

    ``observing_since``: when the history starts. Until it covers the scale-down window there is
    no evidence the current count is too high (a fresh or restarted operator), so no scale-down.
    """
    raw = raw_replicas(obs.demand, target_per_replica=policy.target_per_replica,
                       min_replicas=policy.min_replicas, max_replicas=policy.max_replicas)
    keep = max(policy.up_window, policy.down_window)
    recent = (*(r for r in history if obs.now - r.time <= keep), Recommendation(obs.now, raw))
    up_rec = min(r.replicas for r in recent if obs.now - r.time <= policy.up_window)
    down_rec = max(r.replicas for r in recent if obs.now - r.time <= policy.down_window)
    current = obs.current_replicas
    if observing_since is not None and obs.now - observing_since < policy.down_window:
        down_rec = max(down_rec, current)
    hold = breaker_hold(policy, obs)
    demand_text = f"demand {obs.demand} (queued {obs.queue_length} + in flight {obs.in_flight})"

    if up_rec > current:
        target = min(up_rec, current + policy.up_max_step)
        reason, message = "ScaleUp", f"{demand_text} needs {raw}; scaling up to {target}"
        if hold is not None:
            target = current
            reason, message = "BreakerHold", f"scale-up to {raw} held: {hold}"
    elif down_rec < current:
        target = max(down_rec, current - policy.down_max_step)
        reason, message = "ScaleDown", f"{demand_text} needs {raw}; scaling down to {target}"
    elif raw != current:
        target = current
        window = policy.up_window if raw > current else policy.down_window
        reason, message = "Stabilizing", (f"{demand_text} needs {raw}; waiting for the "
                                          f"{window:.0f}s stabilisation window")
    else:
        target = current
        reason, message = "Stable", f"{demand_text}; {current} replicas fit"

    bounded = clamp(target, policy.min_replicas, policy.max_replicas)
    if bounded != current and reason not in ("ScaleUp", "ScaleDown"):
        reason = "ScaleUp" if bounded > current else "ScaleDown"
        message = (f"replicas {current} outside [{policy.min_replicas}, {policy.max_replicas}]; "
                   f"set to {bounded}")
    elif bounded != target:
        message = f"{message} (bounded to {bounded})"
    if bounded == current and reason in ("ScaleUp", "ScaleDown"):
        reason, message = "Stable", f"{demand_text}; {current} replicas fit"
    return Decision(desired=bounded, raw=raw, reason=reason, message=message,
                    breaker_hold=hold is not None and reason == "BreakerHold", history=_compact(recent))


def _compact(history: Sequence[Recommendation]) -> tuple[Recommendation, ...]:
    """Drop an entry when the next one has the same count: for a min or max over a window
    ending now, a run of equal values matters only through its newest time. Keeps the status
    small (a 1 s poll with a 1 h window would otherwise store 3,600 entries)."""
    return tuple(r for r, nxt in zip(history, (*history[1:], None), strict=True)
                 if nxt is None or nxt.replicas != r.replicas)


def breaker_counts(
    states: Iterable[BreakerState], *, now: float, active_window: float,
) -> tuple[int, int, set[str]]:
    """(open, known, open destinations): open means not closed (open or half-open).

    Closed breakers count as known only when they saw traffic within ``active_window``, so a
    long tail of destinations nobody calls any more cannot dilute the open share.
    """
    open_names: set[str] = set()
    known = 0
    for state in states:
        if state.state != "closed":
            open_names.add(state.destination)
            known += 1
        elif state.updated_at is not None and now - state.updated_at <= active_window:
            known += 1
    return len(open_names), known, open_names


def backlog_share(parked: Mapping[str, int], open_destinations: set[str], *,
                  ready: int) -> float | None:
    """Share of the waiting backlog (``ready`` signals plus webhooks ``parked`` per destination)
    that is parked with open destinations (None when nothing waits)."""
    total = ready + sum(parked.values())
    if total <= 0:
        return None
    return sum(n for d, n in parked.items() if d in open_destinations) / total


def deletion_costs(pods: Mapping[str, str | None], held: Mapping[str, int] | None) -> dict[str, int]:
    """New pod-deletion-cost per pod whose annotation must change (pod -> current annotation).

    ``held`` maps pod name -> tasks the pod's worker holds (active + reserved + scheduled).
    Busy pods cost their task count, idle ones 0, so the ReplicaSet removes idle pods first.
    Pods that did not answer keep whatever they have; with no answer at all nothing changes.
    """
    if held is None:
        return {}
    out: dict[str, int] = {}
    for pod, current in pods.items():
        if pod not in held:
            continue
        cost = min(max(held[pod], 0), MAX_DELETION_COST)
        if current != str(cost):
            out[pod] = cost
    return out


InspectReply = Mapping[str, Sequence[object] | None] | None  # worker name -> its tasks, from one query


def held_from_replies(replies: Sequence[InspectReply],
                      engine: Sequence[Mapping[str, object]] = ()) -> dict[str, int] | None:
    """Merge ``inspect`` replies (active, reserved, scheduled) into tasks held per pod, plus
    the deliveries each worker's engine holds (``engine``: the ``engine_in_flight`` broadcast's
    replies, ``{worker: {"in_flight": n}}`` each; a worker without the command answers an
    error and adds nothing).

    Only workers that answered every inspect query are counted: one that missed a reply (a
    slow worker, a lost broadcast) could hold tasks in the part it did not report, and counting
    it as idle would make it the ReplicaSet's first victim. Those pods keep their annotation.
    None when no worker answered all of them.
    """
    answered = [set(reply or {}) for reply in replies]
    complete = set.intersection(*answered) if answered else set()
    held: dict[str, int] = {}
    for reply in replies:
        for worker, tasks in (reply or {}).items():
            if worker in complete:
                pod = _pod(worker)
                held[pod] = held.get(pod, 0) + len(tasks or [])
    for engine_reply in engine:
        for worker, answer in engine_reply.items():
            count = answer.get("in_flight") if isinstance(answer, Mapping) else None
            if worker in complete and isinstance(count, int) and not isinstance(count, bool):
                held[_pod(worker)] += max(count, 0)
    return held or None


def _pod(worker: object) -> str:
    """A worker's pod: its name after ``@`` (the hostname, which is the pod's name)."""
    return str(worker).split("@", 1)[-1]


PEERING_PRIORITY_RANGE = (1, 2**31)


def peering_priority(configured: int | None, from_command_line: int, draw: Callable[[int, int], int]) -> int:
    """This process's kopf peering priority.

    kopf lets only the highest live priority act and pauses *all* operators that tie, so
    replicas must not share one: a configured priority wins, then ``kopf run --priority``
    (kopf's default is 0), else a random draw from ``PEERING_PRIORITY_RANGE``.
    """
    if configured is not None:
        return configured
    if from_command_line:
        return from_command_line
    return draw(*PEERING_PRIORITY_RANGE)
