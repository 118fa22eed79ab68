"""One reconcile function per resource: observe (reads), decide (pure), apply (writes)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis

from compliance.redis_client import RedisTarget
from compliance_operator import AUTOSCALERS, REPLAYS, jobs, k8s, metrics_source, policy
from compliance_operator.settings import OperatorSettings
from compliance_operator.spec import AutoscalerSpec

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every handler needs; built once in the startup handler."""

    settings: OperatorSettings
    kube: k8s.Kube
    redis: metrics_source.RedisClients
    clock: Callable[[], float] = field(default=time.time)


def iso(ts: float) -> str:
    """RFC 3339 UTC timestamp, as Kubernetes writes them."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[dict[str, Any]], *, type_: str, status: bool, reason: str,
                  message: str, now: float) -> list[dict[str, Any]]:
    """Conditions with ``type_`` replaced; lastTransitionTime moves only when status changes."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    new = {"type": type_, "status": value, "reason": reason, "message": message[:4000],
           "lastTransitionTime": since or iso(now)}
    return [c for c in conditions if c.get("type") != type_] + [new]


# --- WorkerAutoscaler -----------------------------------------------------------------------------------

@dataclass
class AutoscalerState:
    """Carried between polls of one WorkerAutoscaler (seeded from its status after a restart)."""

    history: tuple[policy.Recommendation, ...] = ()
    conditions: list[dict[str, Any]] = field(default_factory=list)
    last_reason: str = ""
    since: float | None = None  # start of the recommendation history (set on the first poll)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> AutoscalerState:
        """Resume the stabilisation history a previous operator left in the status."""
        history = tuple(policy.Recommendation(float(r["time"]), int(r["replicas"]))
                        for r in status.get("recommendations") or [])
        conditions = [dict(c) for c in status.get("conditions") or []]
        scaling = next((c for c in conditions if c.get("type") == "Scaling"), {})
        return cls(history=history, conditions=conditions, last_reason=str(scaling.get("reason", "")),
                   since=min((r.time for r in history), default=None))


@dataclass(frozen=True)
class Blocked:
    """A poll that could not observe everything it needs; ``reason`` names what is missing."""

    now: float
    reason: str
    message: str
    current: int | None = None  # the Deployment's replicas, when it was read


@dataclass(frozen=True)
class Observed:
    """Everything one poll read: the target Deployment, where Redis is and the broker snapshot."""

    now: float
    deployment: Mapping[str, Any]
    current: int
    redis: RedisTarget
    snapshot: metrics_source.Snapshot


@dataclass(frozen=True)
class Condition:
    """One status condition to set."""

    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    """One Kubernetes Event to post on the WorkerAutoscaler."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What one poll writes, decided without I/O from the spec, the observation and the state."""

    status: Mapping[str, Any]  # status fields besides conditions
    ready: Condition
    scaling: Condition
    last_reason: str
    event: Event | None = None
    scale_to: int | None = None  # write spec.replicas
    protect_busy_pods: bool = False  # annotate busy pods first (scale-down); appends a note
    history: tuple[policy.Recommendation, ...] | None = None  # new history (None: unchanged)
    since: float | None = None  # new start of the history (None: unchanged)

    def with_note(self, note: str) -> Plan:
        """The scale-down note (busy pods) appended to the Scaling message and the event."""
        event = None if self.event is None else replace(self.event, message=self.event.message + note)
        return replace(self, scaling=replace(self.scaling, message=self.scaling.message + note),
                       event=event)


def reconcile_autoscaler(ctx: Context, spec: AutoscalerSpec, state: AutoscalerState) -> float:
    """One poll: observe, decide, apply. Returns seconds until the next poll."""
    observation = observe(ctx, spec)
    apply(ctx, spec, observation, decide(spec, observation, state, ctx.settings), state)
    return spec.polling_interval


def observe(ctx: Context, spec: AutoscalerSpec) -> Observed | Blocked:
    """Read the HPAs, the target Deployment, the Redis URL and the broker (reads only)."""
    now = ctx.clock()
    hpas = ctx.kube.hpas_targeting(spec.namespace, spec.target)
    if hpas:
        return Blocked(now, "HPAConflict",
                       f"HorizontalPodAutoscaler {', '.join(hpas)} also targets Deployment {spec.target}; "
                       "doing nothing until it is removed")
    try:
        deployment = ctx.kube.deployment(spec.namespace, spec.target)
    except k8s.NotFound:
        return Blocked(now, "TargetNotFound", f"Deployment {spec.target} not found")
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    try:
        # The URL under the spec's key; COMPLIANCE_REDIS_SENTINELS (and _MASTER, _PASSWORD) in
        # the same Secret put the primary behind Sentinel, as for the service itself.
        target = RedisTarget.from_env(ctx.kube.secret_data(spec.namespace, spec.secret_name),
                                      url_key=spec.secret_key)
    except KeyError:
        return Blocked(now, "RedisSecretUnavailable",
                       f"cannot read Secret {spec.secret_name}: it has no key {spec.secret_key!r}", current)
    except (k8s.ApiError, ValueError) as exc:
        return Blocked(now, "RedisSecretUnavailable", f"cannot read Secret {spec.secret_name}: {exc}",
                       current)
    try:
        snapshot = metrics_source.read_snapshot(
            ctx.redis.get(target), prefix=spec.key_prefix, queue=spec.queue,
            sample_backlog=spec.policy.breaker_enabled, reset_timeout=ctx.settings.breaker_reset_timeout,
            active_window=ctx.settings.breaker_active_window_seconds, now=now)
    except redis.RedisError as exc:
        return Blocked(now, "RedisUnavailable", f"cannot read the broker: {exc}", current)
    return Observed(now=now, deployment=deployment, current=current, redis=target, snapshot=snapshot)


def decide(spec: AutoscalerSpec, seen: Observed | Blocked, state: AutoscalerState,
           settings: OperatorSettings) -> Plan:
    """The status, conditions, event and scale for one poll (pure: reads ``state``, never writes it)."""
    status: dict[str, Any] = {"observedGeneration": spec.generation, "lastPollTime": iso(seen.now)}
    if seen.current is not None:
        status["currentReplicas"] = seen.current
    if isinstance(seen, Blocked):
        blocked = Condition(False, seen.reason, seen.message)
        warning = Event("Warning", seen.reason, seen.message) if seen.reason != state.last_reason else None
        return Plan(status=status, ready=blocked, scaling=blocked, last_reason=seen.reason, event=warning)

    snap, current = seen.snapshot, seen.current
    status.update(queueLength=snap.queue_length, inFlight=snap.in_flight, openBreakers=snap.open_breakers,
                  knownBreakers=snap.known_breakers, openBacklogShare=snap.open_backlog_share,
                  scheduled=snap.scheduled, scheduledDue=snap.scheduled_due, parked=snap.parked)
    since = seen.now if state.since is None else state.since
    decision = policy.decide(spec.policy, policy.Observation(
        now=seen.now, current_replicas=current, queue_length=snap.queue_length, in_flight=snap.in_flight,
        open_breakers=snap.open_breakers, known_breakers=snap.known_breakers,
        open_backlog_share=snap.open_backlog_share), state.history, since)
    status.update(desiredReplicas=decision.desired,
                  recommendations=[{"time": r.time, "replicas": r.replicas} for r in decision.history])
    reason, message = decision.reason, decision.message
    event: Event | None = None
    scale_to: int | None = None
    if spec.paused and decision.desired != current:
        reason, message = "Paused", f"paused; would set {decision.desired} replicas: {message}"
    elif decision.desired != current:
        scale_to = decision.desired
        status.update(lastScaleTime=iso(seen.now), currentReplicas=decision.desired)
        event = Event("Normal", reason, f"{current} -> {decision.desired}: {message}")
    elif reason != state.last_reason and reason == "BreakerHold":
        event = Event("Warning", reason, message)
    return Plan(
        status=status, ready=Condition(True, "Observed", "queue, unacked and breakers read"),
        scaling=Condition(reason in ("ScaleUp", "ScaleDown"), reason, message), last_reason=reason,
        event=event, scale_to=scale_to,
        protect_busy_pods=scale_to is not None and scale_to < current and settings.deletion_cost_enabled,
        history=decision.history, since=since)


def apply(ctx: Context, spec: AutoscalerSpec, seen: Observed | Blocked, plan: Plan,
          state: AutoscalerState) -> None:
    """Write the plan: busy pods' deletion cost, then the scale, the event, the state and the status."""
    if plan.protect_busy_pods and isinstance(seen, Observed):
        plan = plan.with_note(_protect_busy_pods(ctx, seen.deployment, seen.redis, spec.key_prefix))
    if plan.scale_to is not None:
        ctx.kube.scale_deployment(spec.namespace, spec.target, plan.scale_to)
    if plan.event is not None:
        k8s.event(spec.body, kind=plan.event.type, reason=plan.event.reason, message=plan.event.message)
    if plan.history is not None:
        state.history = plan.history
    if plan.since is not None:
        state.since = plan.since
    state.last_reason = plan.last_reason
    for type_, cond in (("Ready", plan.ready), ("Scaling", plan.scaling)):
        state.conditions = set_condition(state.conditions, type_=type_, status=cond.status,
                                         reason=cond.reason, message=cond.message, now=seen.now)
    ctx.kube.patch_status(AUTOSCALERS, spec.namespace, spec.name,
                          {**plan.status, "conditions": state.conditions})


def _protect_busy_pods(ctx: Context, deployment: Mapping[str, Any], target: RedisTarget, prefix: str) -> str:
    """Mark busy pods expensive to delete before the ReplicaSet picks victims; returns a note."""
    pods = ctx.kube.pods_of(deployment)
    held = metrics_source.held_tasks_by_pod(target, prefix=prefix,
                                            timeout=ctx.settings.inspect_timeout_seconds)
    if held is None:
        return " (no worker answered inspect; pod-deletion-cost unchanged)"
    namespace = deployment["metadata"]["namespace"]
    for pod, cost in policy.deletion_costs(pods, held).items():
        ctx.kube.set_deletion_cost(namespace, pod, cost)
    busy = sum(1 for pod in pods if held.get(pod, 0) > 0)
    return f" ({busy} of {len(pods)} pods busy, marked with pod-deletion-cost)"


# --- DeadLetterReplay --------------------------------------------------------------------------------------

def start_replay(ctx: Context, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create the replay's one Job (idempotent); returns the status fields to merge.

    The status goes back through kopf's own patch (one write with its progress annotation), so
    a watch event of a half-written object cannot trigger a second creation attempt.
    """
    status = body.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return {}
    job, created = ctx.kube.create_job(jobs.build_job(body=body, settings=ctx.settings))
    name = job["metadata"]["name"]
    if created:
        k8s.event(body, kind="Normal", reason="JobCreated", message=f"created Job {name}")
    return {
        "phase": status.get("phase") or jobs.job_phase(job), "jobName": name,
        "dryRun": bool((body.get("spec") or {}).get("dryRun", False)),
        "startTime": status.get("startTime") or iso(ctx.clock()),
    }


def sync_replay(ctx: Context, job: Mapping[str, Any]) -> None:
    """Copy a replay Job's phase (and, when finished, its counts) into the owning CR's status."""
    jmeta = job["metadata"]
    owner = next((ref for ref in jmeta.get("ownerReferences") or []
                  if ref.get("kind") == "DeadLetterReplay" and ref.get("controller")), None)
    if owner is None:
        return
    namespace = jmeta["namespace"]
    cr = ctx.kube.get_custom(REPLAYS, namespace, owner["name"])
    if cr is None or cr["metadata"].get("uid") != owner.get("uid"):
        return
    old = cr.get("status") or {}
    if old.get("phase") in ("Succeeded", "Failed"):
        return  # final; the Job may be gone after ttlSecondsAfterFinished
    phase = jobs.job_phase(job)
    now = ctx.clock()
    patch: dict[str, Any] = {"phase": phase, "jobName": jmeta["name"]}
    if phase in ("Succeeded", "Failed"):
        message = ctx.kube.termination_message(namespace, jmeta["name"])
        counts = jobs.parse_summary(message)
        if counts is not None:
            patch.update(counts)
            text = ", ".join(f"{k} {v}" for k, v in counts.items())
        else:
            text = f"no summary in the termination message: {(message or '')[-300:]!r}"
        patch["message"] = text
        patch["completionTime"] = iso(now)
        patch["conditions"] = set_condition(
            list(old.get("conditions") or []), type_="Complete", status=phase == "Succeeded",
            reason=phase, message=text, now=now)
        k8s.event(cr, kind="Normal" if phase == "Succeeded" else "Warning", reason=f"Replay{phase}",
                  message=text)
    elif phase == old.get("phase"):
        return
    ctx.kube.patch_status(REPLAYS, namespace, owner["name"], patch)
