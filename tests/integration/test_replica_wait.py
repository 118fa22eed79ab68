"""The API's wait for a replica (COMPLIANCE_REDIS_WAIT_REPLICAS): a real primary and replica, the
replica frozen (SIGSTOP) to make it miss writes."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.localredis import LocalRedis
from compliance.store.replication import wait_for_replicas
from tests.support.services import PRODUCER_KEY, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LocalRedis, LocalRedis]]:
    primary = LocalRedis(data_dir=tmp_path / "primary").start()
    replica = LocalRedis(data_dir=tmp_path / "replica",
                         extra_args=("--replicaof", "127.0.0.1", str(primary.port))).start()
    client = redis.Redis(port=primary.port, decode_responses=True)
    wait_until(lambda: client.info("replication").get("slave0", {}).get("state") == "online",
               message="replica never synced")
    client.close()
    yield primary, replica
    if replica.process:
        os.kill(replica.process.pid, signal.SIGCONT)
    replica.stop()
    primary.stop()


def test_the_wait_covers_writes_made_on_other_connections(pair):
    """WAIT is documented for the writes of its own connection; the fence written just before it
    on that connection has a later replication offset than anything written before."""
    primary, replica = pair
    writer = redis.Redis(port=primary.port)
    waiter = redis.Redis(port=primary.port)
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    writer.set("webhook_status:wh_x", "{}")  # another connection (another pool slot, or kombu)
    assert not wait_for_replicas(waiter, replicas=1, timeout_ms=200).met
    os.kill(replica.process.pid, signal.SIGCONT)
    outcome = wait_for_replicas(waiter, replicas=1, timeout_ms=5000)
    assert outcome.met and outcome.acknowledged == 1
    assert redis.Redis(port=replica.port).get("webhook_status:wh_x") == b"{}"


def test_a_202_waits_for_the_replica_and_counts_when_it_could_not(pair, env, receiver):
    primary, replica = pair
    settings = settings_from_env({**env, "COMPLIANCE_REDIS_URL": primary.url,
                                  "COMPLIANCE_REDIS_WAIT_REPLICAS": "1",
                                  "COMPLIANCE_REDIS_WAIT_TIMEOUT_MS": "300"})
    body = {"url": receiver.url(), "event": "e", "payload": {}}
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
        before = waits(api)
        accepted = api.post("/webhooks", json=body)
        assert accepted.status_code == 202
        # the 202 was sent after the replica held the record
        record = redis.Redis(port=replica.port).get(f"webhook_status:{accepted.json()['webhook_id']}")
        assert record is not None
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        late = api.post("/webhooks", json=body)
        assert late.status_code == 202  # the primary has it: accepted, with the weaker promise
        assert time.monotonic() - started >= 0.3  # it did wait the timeout out
        after = waits(api)  # counters are per process: compare with what other tests left
        assert (after["met"] - before["met"], after["timeout"] - before["timeout"]) == (1, 1)


def waits(api: TestClient) -> dict[str, float]:
    """redis_replica_wait_total by result, read from /metrics."""
    found = dict(re.findall(r'^redis_replica_wait_total\{result="(\w+)"\} (\S+)$',
                            api.get("/metrics").text, flags=re.M))
    return {result: float(found.get(result, 0)) for result in ("met", "timeout")}
