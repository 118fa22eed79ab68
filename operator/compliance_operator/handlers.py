"""One reconcile function per resource: read state, call the pure policy, write the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from compliance_operator import AUTOSCALERS, REPLAYS, jobs, k8s, metrics_source, policy
from compliance_operator.settings import OperatorSettings

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

def scale_policy(spec: Mapping[str, Any]) -> policy.ScalePolicy:
    """The CR spec (with the CRD's defaults) as a ScalePolicy."""
    behavior = spec.get("behavior") or {}
    up = behavior.get("scaleUp") or {}
    down = behavior.get("scaleDown") or {}
    breakers = spec.get("breakerPolicy") or {}
    return policy.ScalePolicy(
        min_replicas=int(spec.get("minReplicas", 1)), max_replicas=int(spec["maxReplicas"]),
        target_per_replica=int(spec.get("targetTasksPerReplica", 10)),
        up_window=float(up.get("stabilizationWindowSeconds", 0)), up_max_step=int(up.get("maxStep", 4)),
        down_window=float(down.get("stabilizationWindowSeconds", 300)),
        down_max_step=int(down.get("maxStep", 1)),
        breaker_enabled=bool(breakers.get("enabled", True)),
        open_share_threshold=float(breakers.get("openShareThreshold", 0.5)),
        backlog_share_threshold=float(breakers.get("backlogShareThreshold", 0.5)),
    )


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


def reconcile_autoscaler(ctx: Context, body: Mapping[str, Any], state: AutoscalerState) -> float:
    """One poll: observe, decide, annotate, scale, report. Returns seconds until the next poll."""
    meta, spec = body["metadata"], body["spec"]
    namespace, name = meta["namespace"], meta["name"]
    interval = float(spec.get("pollingIntervalSeconds", 15))
    target = spec["scaleTargetRef"]["name"]
    now = ctx.clock()
    status: dict[str, Any] = {"observedGeneration": meta.get("generation"), "lastPollTime": iso(now)}

    def finish(ready: bool, ready_reason: str, scaling_reason: str, message: str,
               event_type: str = "Warning") -> float:
        state.conditions = set_condition(state.conditions, type_="Ready", status=ready,
                                         reason=ready_reason, message=message, now=now)
        state.conditions = set_condition(state.conditions, type_="Scaling", status=False,
                                         reason=scaling_reason, message=message, now=now)
        if scaling_reason != state.last_reason:
            k8s.event(body, kind=event_type, reason=scaling_reason, message=message)
        state.last_reason = scaling_reason
        ctx.kube.patch_status(AUTOSCALERS, namespace, name, {**status, "conditions": state.conditions})
        return interval

    hpas = ctx.kube.hpas_targeting(namespace, target)
    if hpas:
        return finish(False, "HPAConflict", "HPAConflict",
                      f"HorizontalPodAutoscaler {', '.join(hpas)} also targets Deployment {target}; "
                      "doing nothing until it is removed")
    try:
        deployment = ctx.kube.deployment(namespace, target)
    except k8s.ApiError as exc:
        if exc.status != 404:
            raise
        return finish(False, "TargetNotFound", "TargetNotFound", f"Deployment {target} not found")
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    status["currentReplicas"] = current

    redis_ref = spec["redis"]
    secret = redis_ref["secretRef"]
    try:
        url = ctx.kube.secret_value(namespace, secret["name"], secret.get("key", "COMPLIANCE_REDIS_URL"))
    except (k8s.ApiError, KeyError) as exc:
        return finish(False, "RedisSecretUnavailable", "RedisSecretUnavailable",
                      f"cannot read Secret {secret['name']}: {exc}")
    breakers = spec.get("breakerPolicy") or {}
    try:
        snap = metrics_source.read_snapshot(
            ctx.redis.get(url), prefix=redis_ref.get("keyPrefix", "compliance-"), queue=spec["queue"],
            sample_size=int(breakers.get("sampleSize", 200)),
            sample_backlog=bool(breakers.get("enabled", True)),
            reset_timeout=ctx.settings.breaker_reset_timeout,
            active_window=ctx.settings.breaker_active_window_seconds, now=now)
    except redis.RedisError as exc:
        return finish(False, "RedisUnavailable", "RedisUnavailable", f"cannot read the broker: {exc}")
    status.update(queueLength=snap.queue_length, inFlight=snap.in_flight, openBreakers=snap.open_breakers,
                  knownBreakers=snap.known_breakers, openBacklogShare=snap.open_backlog_share)

    if state.since is None:
        state.since = now
    decision = policy.decide(scale_policy(spec), policy.Observation(
        now=now, current_replicas=current, queue_length=snap.queue_length, in_flight=snap.in_flight,
        open_breakers=snap.open_breakers, known_breakers=snap.known_breakers,
        open_backlog_share=snap.open_backlog_share), state.history, state.since)
    state.history = decision.history
    status.update(desiredReplicas=decision.desired,
                  recommendations=[{"time": r.time, "replicas": r.replicas} for r in decision.history])
    reason, message = decision.reason, decision.message
    if spec.get("paused") and decision.desired != current:
        reason, message = "Paused", f"paused; would set {decision.desired} replicas: {message}"
    elif decision.desired != current:
        if decision.desired < current and ctx.settings.deletion_cost_enabled:
            message += _protect_busy_pods(ctx, deployment, url, redis_ref.get("keyPrefix", "compliance-"))
        ctx.kube.scale_deployment(namespace, target, decision.desired)
        status.update(lastScaleTime=iso(now), currentReplicas=decision.desired)
        k8s.event(body, kind="Normal", reason=reason, message=f"{current} -> {decision.desired}: {message}")
        state.last_reason = reason
    elif reason != state.last_reason and reason == "BreakerHold":
        k8s.event(body, kind="Warning", reason=reason, message=message)
    state.last_reason = reason
    state.conditions = set_condition(state.conditions, type_="Ready", status=True, reason="Observed",
                                     message="queue, unacked and breakers read", now=now)
    state.conditions = set_condition(state.conditions, type_="Scaling",
                                     status=reason in ("ScaleUp", "ScaleDown"), reason=reason,
                                     message=message, now=now)
    ctx.kube.patch_status(AUTOSCALERS, namespace, name, {**status, "conditions": state.conditions})
    return interval


def _protect_busy_pods(ctx: Context, deployment: Mapping[str, Any], url: str, prefix: str) -> str:
    """Mark busy pods expensive to delete before the ReplicaSet picks victims; returns a note."""
    pods = ctx.kube.pods_of(deployment)
    held = metrics_source.held_tasks_by_pod(url, prefix=prefix, timeout=ctx.settings.inspect_timeout_seconds)
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
