"""The parsed WorkerAutoscaler spec carries the CRD's defaults, and one poll's decision is pure."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from compliance.redis_client import RedisTarget
from compliance_operator import policy
from compliance_operator.handlers import AutoscalerState, Blocked, Observed, decide
from compliance_operator.metrics_source import Snapshot
from compliance_operator.settings import OperatorSettings
from compliance_operator.spec import AutoscalerSpec

CRD = Path(__file__).resolve().parents[2] / "manifests/crds/workerautoscalers.reporting.compliance.io.yaml"
MINIMAL: dict[str, Any] = {
    "metadata": {"namespace": "ns1", "name": "wa", "generation": 3},
    "spec": {"scaleTargetRef": {"name": "worker"}, "redis": {"secretRef": {"name": "redis"}},
             "queue": "compliance_webhooks", "maxReplicas": 10},
}


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server stores: every missing field with a schema default filled in."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in (schema.get("properties") or {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = with_defaults(out[key], sub)
    return out


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def test_spec_defaults_are_the_crds() -> None:
    stored = {**MINIMAL, "spec": with_defaults(MINIMAL["spec"], spec_schema())}
    assert stored["spec"] != MINIMAL["spec"], "the CRD declares no defaults: the test checks nothing"
    assert AutoscalerSpec.from_body(stored) == AutoscalerSpec.from_body(MINIMAL)


def test_spec_reads_every_field() -> None:
    body = copy.deepcopy(MINIMAL)
    body["spec"].update(
        redis={"secretRef": {"name": "r", "key": "URL"}, "keyPrefix": "p-"}, pollingIntervalSeconds=2,
        minReplicas=2, targetTasksPerReplica=7, paused=True,
        behavior={"scaleUp": {"stabilizationWindowSeconds": 5, "maxStep": 3},
                  "scaleDown": {"stabilizationWindowSeconds": 60, "maxStep": 2}},
        breakerPolicy={"enabled": False, "openShareThreshold": 0.9, "backlogShareThreshold": 0.8,
                       "sampleSize": 10})
    spec = AutoscalerSpec.from_body(body)
    assert (spec.namespace, spec.name, spec.generation, spec.target, spec.queue) == (
        "ns1", "wa", 3, "worker", "compliance_webhooks")
    assert (spec.secret_name, spec.secret_key, spec.key_prefix) == ("r", "URL", "p-")
    assert (spec.polling_interval, spec.sample_size, spec.paused) == (2.0, 10, True)
    assert spec.policy == policy.ScalePolicy(
        min_replicas=2, max_replicas=10, target_per_replica=7, up_window=5, up_max_step=3,
        down_window=60, down_max_step=2, breaker_enabled=False, open_share_threshold=0.9,
        backlog_share_threshold=0.8)
    with pytest.raises(KeyError):
        AutoscalerSpec.from_body({**MINIMAL, "spec": {k: v for k, v in MINIMAL["spec"].items()
                                                     if k != "queue"}})


SETTINGS = OperatorSettings()
SPEC = AutoscalerSpec.from_body(with_defaults(MINIMAL, {"properties": {"spec": spec_schema()}}))


def seen(current: int, queued: int, *, now: float = 1000.0, open_breakers: int = 0) -> Observed:
    return Observed(now=now, deployment={}, current=current, redis=RedisTarget(url="redis://x"),
                    snapshot=Snapshot(queue_length=queued, in_flight=0, open_breakers=open_breakers,
                                      known_breakers=open_breakers, open_backlog_share=None))


def test_a_blocked_poll_warns_once_and_touches_nothing_else() -> None:
    state = AutoscalerState()
    plan = decide(SPEC, Blocked(1000.0, "RedisUnavailable", "cannot read the broker", current=3),
                  state, SETTINGS)
    assert plan.event is not None and (plan.event.type, plan.event.reason) == ("Warning", "RedisUnavailable")
    assert plan.scale_to is None and plan.history is None and plan.since is None
    assert not plan.ready.status and plan.scaling.reason == "RedisUnavailable"
    assert plan.status["currentReplicas"] == 3 and plan.status["observedGeneration"] == 3
    state.last_reason = "RedisUnavailable"
    assert decide(SPEC, Blocked(1001.0, "RedisUnavailable", "again"), state, SETTINGS).event is None


def test_scale_up_is_planned_with_a_normal_event() -> None:
    plan = decide(SPEC, seen(1, 35), AutoscalerState(), SETTINGS)  # 35 / 10 per replica
    assert plan.scale_to == 4 and not plan.protect_busy_pods
    assert plan.event is not None and plan.event.message.startswith("1 -> 4: ")
    assert plan.scaling.status and plan.scaling.reason == "ScaleUp" and plan.ready.reason == "Observed"
    assert plan.status["currentReplicas"] == 4 and plan.status["desiredReplicas"] == 4
    assert plan.since == 1000.0 and plan.history


def test_scale_down_protects_busy_pods_first_and_the_note_reaches_condition_and_event() -> None:
    state = AutoscalerState(since=0.0)  # observed for longer than the scale-down window
    plan = decide(SPEC, seen(4, 0), state, SETTINGS)
    assert plan.scale_to == 3 and plan.protect_busy_pods
    noted = plan.with_note(" (1 of 4 pods busy)")
    assert noted.scaling.message.endswith("(1 of 4 pods busy)")
    assert noted.event is not None and noted.event.message.endswith("(1 of 4 pods busy)")
    off = OperatorSettings(deletion_cost_enabled=False)
    assert not decide(SPEC, seen(4, 0), state, off).protect_busy_pods


def test_paused_plans_no_scale_and_no_event() -> None:
    plan = decide(replace(SPEC, paused=True), seen(1, 35), AutoscalerState(), SETTINGS)
    assert plan.scale_to is None and plan.event is None
    assert plan.scaling.reason == "Paused" and "would set 4 replicas" in plan.scaling.message


def test_breaker_hold_warns_only_when_it_starts() -> None:
    state = AutoscalerState()
    plan = decide(SPEC, seen(1, 35, open_breakers=1), state, SETTINGS)
    assert plan.scale_to is None and plan.scaling.reason == "BreakerHold"
    assert plan.event is not None and plan.event.type == "Warning"
    state.last_reason = "BreakerHold"
    assert decide(SPEC, seen(1, 35, open_breakers=1), state, SETTINGS).event is None
