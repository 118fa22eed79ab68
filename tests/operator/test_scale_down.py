"""Safe scale-down: a busy worker pod (asked over the broker with Celery inspect) is marked with a
pod-deletion-cost before the replica count is lowered."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.messaging import DELIVER_TASK
from compliance.redis_client import RedisTarget
from compliance.settings import Settings
from compliance.wiring import Container
from compliance_operator.policy import DELETION_COST_ANNOTATION
from tests.operator.conftest import Api, eventually, running_operator
from tests.operator.test_autoscaler import QUEUE, TARGET, autoscaler
from tests.support.receiver import Receiver, Reply
from tests.support.services import WorkerProcess, wait_until


@pytest.mark.asyncio
async def test_busy_pod_gets_a_deletion_cost_before_scale_down(
        api: Api, redis_url: str, r: redis.Redis, settings: Settings, operator_env: Callable[..., None],
        start_worker: Callable[..., WorkerProcess]) -> None:
    operator_env(INSPECT_TIMEOUT_SECONDS="1.0")
    # A real delivery worker; Celery names it <name>@<hostname>, and in a pod hostname == pod name.
    start_worker(kind="deliveries", concurrency=2)
    busy_pod = socket.gethostname()
    services = Container(settings)
    try:
        # A delivery signal due in 25 s: the worker reserves it and holds it (unacked, "scheduled").
        services.celery.send_task(DELIVER_TASK, args=[f"wh_{uuid.uuid4().hex}"], queue=QUEUE,
                                  countdown=25)
        wait_until(lambda: r.hlen("compliance-unacked") == 1 and r.llen(f"compliance-{QUEUE}") == 0,
                   timeout=20, message="worker did not reserve the countdown task")
    finally:
        services.close()

    await api.secret("redis", {"COMPLIANCE_REDIS_URL": redis_url})
    await api.deployment(TARGET, 2)
    for pod in (busy_pod, "worker-deliveries-silent"):
        await api.create("v1/pods", {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": pod, "labels": {"app": TARGET}}})
    await api.create("v1/pods", {"apiVersion": "v1", "kind": "Pod",  # another Deployment's pod
                                 "metadata": {"name": "api-0", "labels": {"app": "api"}}})
    await api.create("workerautoscalers", autoscaler(behavior={
        "scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
        "scaleDown": {"stabilizationWindowSeconds": 0, "maxStep": 1}}))
    async with running_operator():
        await eventually(lambda: _replicas_is(api, 1), message="did not scale down")

    busy = await api.get("v1/pods", busy_pod)
    assert busy is not None
    assert busy["metadata"]["annotations"][DELETION_COST_ANNOTATION] == "1"
    for other in ("worker-deliveries-silent", "api-0"):
        obj = await api.get("v1/pods", other)
        assert DELETION_COST_ANNOTATION not in ((obj or {}).get("metadata") or {}).get("annotations", {})
    # the annotation was written before the replica count was lowered
    order = [req.url.path for req in list(api.mock) if str(req.method).upper().endswith("PATCH")]
    assert order.index(f"/api/v1/namespaces/ns1/pods/{busy_pod}") < order.index(
        f"/apis/apps/v1/namespaces/ns1/deployments/{TARGET}/scale")


async def _replicas_is(api: Api, n: int) -> bool:
    return await api.replicas(TARGET) == n


def test_deliveries_the_engine_holds_count_as_the_pods_work(
        redis_url: str, settings: Settings, start_worker: Callable[..., WorkerProcess],
        receiver: Receiver, env: dict[str, str]) -> None:
    """The asyncio engine's deliveries are not Celery pool tasks (`inspect active` lists at most
    the one its Celery thread handed over): the operator also asks each worker's engine, so a
    pod with deliveries in flight is not taken for idle."""
    from compliance_operator.metrics_source import held_tasks_by_pod

    start_worker(kind="deliveries", concurrency=32, extra_env={"COMPLIANCE_READ_TIMEOUT": "30"})
    receiver.default = Reply(200, delay=20)
    with TestClient(create_app(settings),
                    headers={"X-API-Key": env["COMPLIANCE_PRODUCER_API_KEYS"]}) as client:
        for _ in range(12):
            assert client.post("/webhooks", json={"url": receiver.url("/held"), "event": "e",
                                                  "payload": {}}).status_code == 202
    wait_until(lambda: len(receiver.arrived("/held")) == 12, timeout=30,
               message="the engine did not take all twelve")
    held = held_tasks_by_pod(RedisTarget.from_settings(settings), prefix=settings.broker_key_prefix,
                             timeout=2.0)
    assert held is not None and held.get(socket.gethostname(), 0) >= 12, held
