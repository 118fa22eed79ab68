"""WorkerAutoscaler end to end: kopf under KopfRunner, kmock as the API, a real Redis broker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis

from compliance.delivery.models import Envelope
from compliance.settings import Settings
from compliance.store.breakers import BreakerStore
from compliance.wiring import Container
from tests.operator.conftest import Api, eventually, running_operator

pytestmark = pytest.mark.asyncio
QUEUE = "compliance_webhooks"
TARGET = "worker-deliveries"


@pytest.fixture
def services(settings: Settings) -> Iterator[Container]:
    built = Container(settings)
    yield built
    built.close()


def publish(services: Container, n: int, url: str = "https://hooks.example.com/in") -> None:
    """n real delivery messages on compliance-compliance_webhooks, as the API would enqueue them."""
    for _ in range(n):
        services.submitter.submit(Envelope(webhook_id=f"wh_{uuid.uuid4().hex}", url=url,
                                           event="report.ready", payload={"x": 1}))


def reserve(r: redis.Redis, n: int) -> None:
    """Move n messages into kombu's unacked hash exactly as a worker's reserve does."""
    for _ in range(n):
        raw = r.rpop(f"compliance-{QUEUE}")
        assert raw is not None
        message = json.loads(raw)  # type: ignore[arg-type]
        tag = message["properties"]["delivery_tag"]
        r.hset("compliance-unacked", tag, json.dumps([message, QUEUE, QUEUE]))
        r.zadd("compliance-unacked_index", {tag: time.time()})


def autoscaler(name: str = "wa", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": TARGET},
        "redis": {"secretRef": {"name": "redis", "key": "COMPLIANCE_REDIS_URL"}, "keyPrefix": "compliance-"},
        "queue": QUEUE, "minReplicas": 1, "maxReplicas": 10, "targetTasksPerReplica": 5,
        "pollingIntervalSeconds": 1,
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 10},
                     "scaleDown": {"stabilizationWindowSeconds": 300, "maxStep": 1}},
        "breakerPolicy": {"enabled": True, "openShareThreshold": 0.5, "backlogShareThreshold": 0.5,
                          "sampleSize": 200},
        "paused": False,
    }
    base.update(spec)
    return {"apiVersion": "reporting.compliance.io/v1alpha1", "kind": "WorkerAutoscaler",
            "metadata": {"name": name}, "spec": base}


async def status_of(api: Api, name: str = "wa") -> dict[str, Any]:
    obj = await api.get("workerautoscalers", name)
    return dict((obj or {}).get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


@pytest_asyncio.fixture
async def cluster(api: Api, redis_url: str, operator_env: Callable[..., None]) -> Api:
    operator_env()
    await api.secret("redis", {"COMPLIANCE_REDIS_URL": redis_url})
    return api


async def test_unacked_and_backlog_raise_replicas(cluster: Api, services: Container, r: redis.Redis) -> None:
    api = cluster
    await api.deployment(TARGET, 1)
    publish(services, 10)
    reserve(r, 10)  # LLEN is now 0: a list-length scaler would see an idle queue
    assert r.llen(f"compliance-{QUEUE}") == 0
    await api.create("workerautoscalers", autoscaler())
    async with running_operator():
        await eventually(lambda: _replicas_is(api, 2), message="reserved tasks did not count")
        st = await eventually(lambda: _status_with(api, desiredReplicas=2))
        assert (st["queueLength"], st["inFlight"], st["currentReplicas"]) == (0, 10, 2)
        publish(services, 20)  # demand 30 / 5 per replica
        await eventually(lambda: _replicas_is(api, 6), message="backlog did not raise replicas")
        st = await eventually(lambda: _status_with(api, queueLength=20))
        assert st["inFlight"] == 10 and st["lastScaleTime"]
        assert condition(st, "Scaling")["reason"] == "ScaleUp"
        assert condition(st, "Ready")["status"] == "True"
        events = await eventually(lambda: _events(api, "ScaleUp", 2))
        assert any("1 -> 2" in e["message"] for e in events)


async def test_webhooks_held_by_the_delivery_engine_count_as_in_flight(
        cluster: Api, services: Container, r: redis.Redis) -> None:
    """The asyncio engine takes signals off the list and leases their webhooks: nothing is in
    kombu's unacked hash, yet the work is in flight and must hold replicas up."""
    api = cluster
    await api.deployment(TARGET, 1)
    publish(services, 10)
    now = time.time()
    while (raw := r.rpop(f"compliance-{QUEUE}")) is not None:  # as the engine's take does
        message = json.loads(raw)  # type: ignore[arg-type]
        webhook_id = message["headers"]["webhook_id"]
        claim = services.schedule.claim(webhook_id, now=now, lease_until=now + 600)
        assert claim.state == "claimed"
    assert r.hlen("compliance-unacked") == 0
    # and three more wait in the schedule (retries, deferrals): shown, not counted as demand
    for i in range(3):
        env = Envelope(webhook_id=f"wh_later_{i}", url="https://hooks.example.com/in", event="e",
                       payload={})
        services.ledger.accept(env, now)
        services.ledger.reschedule(env, now, due_at=now + (600 if i else -1), error=None)
    await api.create("workerautoscalers", autoscaler())
    async with running_operator():
        await eventually(lambda: _replicas_is(api, 2), message="leased webhooks did not count")
        st = await eventually(lambda: _status_with(api, desiredReplicas=2))
        assert (st["queueLength"], st["inFlight"]) == (0, 10)
        assert (st["scheduled"], st["scheduledDue"]) == (3, 1)


async def test_open_breakers_hold_scale_up(cluster: Api, services: Container, r: redis.Redis,
                                          settings: Settings) -> None:
    api = cluster
    await api.deployment(TARGET, 1)
    breakers = BreakerStore(r, threshold=2, reset_timeout=600, probe_lease=5)
    breakers.record("https://healthy.example.com:443", "success", was_probe=False)
    for _ in range(2):
        breakers.record("https://hooks.example.com:443", "failure", was_probe=False)
    # 40 signals ready for the healthy destination; 120 webhooks parked with the open one, as
    # workers leave them (counted exactly: waiting 160, of which 120 for an open destination)
    publish(services, 40, url="https://healthy.example.com/in")
    now = time.time()
    for i in range(120):
        env = Envelope(webhook_id=f"wh_parked_{i}", url="https://hooks.example.com/in",
                       event="e", payload={})
        services.ledger.accept(env, now)
        services.ledger.park(env, now, destination="https://hooks.example.com:443",
                             until=now + 600, error=("circuit_open", "open"))
    await api.create("workerautoscalers", autoscaler())
    async with running_operator():
        st = await eventually(lambda: _reason_is(api, "BreakerHold"))
        assert st["openBreakers"] == 1 and st["openBacklogShare"] == 0.75
        assert st["parked"] == 120 and st["queueLength"] == 40
        assert st["desiredReplicas"] == 1 and await api.replicas(TARGET) == 1
        assert await eventually(lambda: _events(api, "BreakerHold", 1))
        # the hold is the only thing stopping it: close the breaker and it scales
        breakers.reset("https://hooks.example.com:443")
        await eventually(lambda: _replicas_is(api, 8))


async def test_empty_queue_scales_down_slowly(cluster: Api, r: redis.Redis) -> None:
    api = cluster
    await api.deployment(TARGET, 4)
    await api.create("workerautoscalers", autoscaler(behavior={
        "scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
        "scaleDown": {"stabilizationWindowSeconds": 4, "maxStep": 1}}))
    seen: list[tuple[float, int]] = []
    async with running_operator():
        start = time.monotonic()

        async def track() -> bool:
            seen.append((time.monotonic() - start, await api.replicas(TARGET)))
            return seen[-1][1] == 2
        await eventually(track, timeout=30)
        st = await status_of(api)
    # a fresh operator has no history: nothing moves before the window has been observed
    values = [v for _, v in seen]
    assert values == sorted(values, reverse=True)
    assert set(values) <= {4, 3, 2}, "steps larger than maxStep"
    first_drop = next(t for t, v in seen if v < 4)
    assert first_drop >= 3.0, f"scaled down after {first_drop:.1f}s, inside the 4s window"
    assert condition(st, "Scaling")["reason"] in ("ScaleDown", "Stabilizing")


async def test_hpa_on_the_same_deployment_is_refused(cluster: Api, services: Container) -> None:
    api = cluster
    await api.deployment(TARGET, 1)
    await api.create("autoscaling/v2/horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": TARGET},
                 "minReplicas": 1, "maxReplicas": 3}})
    publish(services, 50)
    await api.create("workerautoscalers", autoscaler())
    async with running_operator():
        st = await eventually(lambda: _reason_is(api, "HPAConflict"))
        assert condition(st, "Ready")["status"] == "False"
        assert "hpa" in condition(st, "Ready")["message"]
        assert await api.replicas(TARGET) == 1


async def _replicas_is(api: Api, n: int) -> bool:
    return await api.replicas(TARGET) == n


async def _status_with(api: Api, **want: Any) -> dict[str, Any] | None:
    st = await status_of(api)
    return st if all(st.get(k) == v for k, v in want.items()) else None


async def _reason_is(api: Api, reason: str) -> dict[str, Any] | None:
    st = await status_of(api)
    return st if condition(st, "Scaling").get("reason") == reason else None


async def _events(api: Api, reason: str, at_least: int) -> list[dict[str, Any]] | None:
    events = api.events(reason)
    return events if len(events) >= at_least else None


async def test_paused_observes_but_never_scales(cluster: Api, services: Container) -> None:
    api = cluster
    await api.deployment(TARGET, 1)
    publish(services, 30)
    await api.create("workerautoscalers", autoscaler(paused=True))
    async with running_operator():
        st = await eventually(lambda: _reason_is(api, "Paused"))
        assert st["queueLength"] == 30 and st["desiredReplicas"] == 6
        assert await api.replicas(TARGET) == 1
        await api.patch("workerautoscalers", "wa", {"spec": {"paused": False}})
        await eventually(lambda: _replicas_is(api, 6), message="unpausing did not apply the live spec")


async def test_unreachable_redis_is_a_condition_not_a_scale(api: Api, operator_env: Callable[..., None]) -> None:
    operator_env(REDIS_TIMEOUT_SECONDS="0.5")
    await api.secret("redis", {"COMPLIANCE_REDIS_URL": "redis://127.0.0.1:1/0"})
    await api.deployment(TARGET, 3)
    await api.create("workerautoscalers", autoscaler())
    async with running_operator():
        st = await eventually(lambda: _reason_is(api, "RedisUnavailable"))
        assert condition(st, "Ready")["status"] == "False"
        assert await api.replicas(TARGET) == 3
