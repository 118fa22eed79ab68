"""The operator follows a Redis failover: a WorkerAutoscaler whose Secret names sentinels keeps
reading the broker after the primary is SIGKILLed and a replica promoted (no restart)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from compliance.store.replication import wait_for_replicas
from compliance.wiring import Container
from tests.operator.conftest import Api, eventually, running_operator
from tests.operator.test_autoscaler import TARGET, autoscaler, publish, status_of
from tests.support.sentinel import SentinelCluster
from tests.support.services import settings_from_env

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    started = SentinelCluster(tmp_path / "redis", down_after_ms=1000).start()
    yield started
    started.stop()


async def test_autoscaler_reads_the_new_primary_after_a_failover(
        api: Api, cluster: SentinelCluster, env: dict[str, str],
        operator_env: Callable[..., None]) -> None:
    operator_env()
    sentinel_env = cluster.env()
    # The Secret the chart writes: the URL (database, password) and the sentinels beside it.
    await api.secret("redis", sentinel_env)
    services = Container(settings_from_env({**env, **sentinel_env}))
    try:
        await api.deployment(TARGET, 1)
        publish(services, 10)
        await api.create("workerautoscalers", autoscaler(maxReplicas=20))
        async with running_operator():
            await eventually(lambda: _queue_is(api, 10), message="the operator never read the queue")
            assert wait_for_replicas(services.redis, replicas=1, timeout_ms=5000).met
            old = cluster.primary_port()
            cluster.kill_primary()
            await asyncio.to_thread(cluster.wait_for_new_primary, old)
            publish(services, 15)  # on the new primary
            st = await eventually(lambda: _queue_is(api, 25), timeout=30,
                                  message="the operator did not follow the new primary")
            ready = next(c for c in st["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", ready
    finally:
        services.close()


async def _queue_is(api: Api, n: int) -> dict[str, object] | None:
    st = await status_of(api)
    return st if st.get("queueLength") == n else None
