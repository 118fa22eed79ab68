"""Redis behind Sentinel: SIGKILL the primary while webhooks flow, and account for every 202.

A real primary, its replica and three sentinels on loopback (``redis-server --sentinel``, what
Debian's redis-sentinel runs), the real API app, a real delivery worker and a real receiver.
The API posts webhooks without pause; the primary is SIGKILLed mid-stream; the sentinels
promote the replica (``down-after-milliseconds`` 1000). Every id that got a 202 must end up
delivered (and seen by the receiver) or dead-lettered; the test prints lost, duplicated and the
seconds the API answered 503 (it must never answer 500).
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from tests.support.receiver import Receiver, Reply
from tests.support.sentinel import SentinelCluster
from tests.support.services import PRODUCER_KEY, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(300)

# Leases shortened together (as in test_durability): lost signals come back after 3 s.
DURABLE = {
    "COMPLIANCE_DELIVERY_SIGNAL_TIMEOUT": "3",
    "COMPLIANCE_DELIVERY_SWEEP_INTERVAL": "0.2",
    "COMPLIANCE_DELIVERY_TASK_TIME_LIMIT": "5",
    "COMPLIANCE_REDIS_SOCKET_TIMEOUT": "2",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    started = SentinelCluster(tmp_path / "redis", down_after_ms=1000).start()
    yield started
    started.stop()


@dataclass
class Stream:
    """What the API answered, request by request."""

    accepted: list[str] = field(default_factory=list)
    answers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status)
    latencies: list[float] = field(default_factory=list)  # seconds, of the 202s before the kill

    def post(self, api: TestClient, url: str, *, timed: bool = False) -> int:
        started = time.monotonic()
        response = api.post("/webhooks", json={"url": url, "event": "e", "payload": {"n": len(self.answers)}})
        self.answers.append((time.monotonic(), response.status_code))
        assert response.status_code in (202, 503), response.text  # never a 500
        if response.status_code == 202:
            self.accepted.append(response.json()["webhook_id"])
            if timed:
                self.latencies.append(time.monotonic() - started)
        return response.status_code

    def seconds_of_503(self) -> float:
        """From the first 503 to the first 202 after it (0 when there was none)."""
        refused = [t for t, code in self.answers if code == 503]
        if not refused:
            return 0.0
        back = next(t for t, code in self.answers if code == 202 and t > refused[0])
        return back - refused[0]


def settled(api: TestClient, ids: list[str]) -> bool:
    return all(api.get(f"/webhook-statuses/{i}").json().get("status") in ("delivered", "failed")
               for i in ids)


def reconcile(api: TestClient, admin: dict[str, str], receiver: Receiver, ids: list[str]) -> dict[str, int]:
    """Delivered and received, or dead-lettered (in the DLQ): anything else is lost."""
    final = {i: api.get(f"/webhook-statuses/{i}").json().get("status") for i in ids}
    sent = collections.Counter(q.headers["webhook-id"] for q in receiver.received())
    in_dlq = {i for i in ids if final[i] == "failed"
              and api.get(f"/dead-letters/{i}", headers=admin).status_code == 200}
    lost = [i for i in ids if not ((final[i] == "delivered" and sent[i] > 0) or i in in_dlq)]
    return {"accepted": len(ids), "delivered": sum(1 for i in ids if final[i] == "delivered"),
            "dead_lettered": len(in_dlq), "lost": len(lost),
            "duplicates": sum(sent[i] - 1 for i in ids if sent[i] > 1)}


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["no-replica-wait", "replica-wait"])
def test_primary_sigkill_under_load_sentinel_promotes_and_every_202_is_accounted_for(
        cluster: SentinelCluster, env: dict[str, str], receiver: Receiver, start_worker,  # type: ignore[no-untyped-def]
        admin_headers: dict[str, str], wait_replicas: int) -> None:
    own_env = {**env, **DURABLE, **cluster.env(), "COMPLIANCE_REDIS_WAIT_REPLICAS": str(wait_replicas)}
    settings = settings_from_env(own_env)
    receiver.default = Reply(200, delay=0.05)
    worker = start_worker(kind="deliveries", concurrency=8, extra_env=own_env, name="follows")
    pid = worker.pid
    stream = Stream()
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
        for _ in range(100):
            assert stream.post(api, receiver.url(), timed=True) == 202
        old = cluster.primary_port()
        cluster.kill_primary()
        killed_at = time.monotonic()
        # Keep posting through the failover until 100 more were accepted on the new primary.
        after_kill = len(stream.accepted)
        deadline = time.monotonic() + 60
        while len(stream.accepted) < after_kill + 100:
            assert time.monotonic() < deadline, "the API never accepted again after the failover"
            if stream.post(api, receiver.url()) == 503:
                time.sleep(0.02)
        new = cluster.wait_for_new_primary(old)
        wait_until(lambda: settled(api, stream.accepted), timeout=120, interval=0.5,
                   message="accepted webhooks were not all delivered after the failover")
        figures = reconcile(api, admin_headers, receiver, stream.accepted)
        figures["seconds_of_503"] = round(stream.seconds_of_503(), 2)  # type: ignore[assignment]
        figures["refused_503"] = sum(1 for _, code in stream.answers if code == 503)
        figures["seconds_to_settle"] = round(time.monotonic() - killed_at, 1)  # type: ignore[assignment]
        latency = sorted(stream.latencies)
        print(f"failover wait_replicas={wait_replicas} primary {old} -> {new}: {figures}; "
              f"202 latency before the kill: median {statistics.median(latency) * 1000:.1f} ms, "
              f"p95 {latency[int(len(latency) * 0.95)] * 1000:.1f} ms")
        if wait_replicas:
            # Every 202 waited until the replica held it: nothing accepted may be lost.
            assert figures["lost"] == 0, figures
        else:
            # Without the wait, only what the primary had not yet shipped when it died (at most
            # the one request in flight here); everything else must come through.
            assert figures["lost"] <= 1, figures
    # The worker followed the new primary: same process, no restart.
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
    assert worker.pid == pid


def test_the_cli_follows_a_failover_with_the_same_configuration(
        cluster: SentinelCluster, env: dict[str, str]) -> None:
    """`compliance dlq` and `compliance cleanup` (and so the replay Job and the retention CronJob)
    find the new primary through the sentinels: nothing in their configuration changes."""
    from compliance.redis_client import create_redis
    from compliance.store.replication import wait_for_replicas
    from tests.integration.test_cli import cli, seed_dead_letters

    own_env = {**env, **cluster.env()}
    settings = settings_from_env(own_env)
    client = create_redis(settings)
    try:
        seed_dead_letters(client, settings)
        assert wait_for_replicas(client, replicas=1, timeout_ms=5000).met
        listed = cli(own_env, "dlq", "list", "--json").stdout.splitlines()
        assert len(listed) == 3
        old = cluster.primary_port()
        cluster.kill_primary()
        new = cluster.wait_for_new_primary(old)
        replayed = cli(own_env, "dlq", "replay", "--id", "wh_cli0")
        assert '"replayed": 1' in replayed.stdout.splitlines()[-1], replayed.stdout
        assert len(cli(own_env, "dlq", "list", "--json").stdout.splitlines()) == 2
        cleaned = cli(own_env, "cleanup", "--status", "failed", "--older-than-days", "0", "--no-documents")
        assert '"statuses_deleted"' in cleaned.stdout
        # what they wrote is on the new primary (the replayed webhook's signal is queued there)
        promoted = cluster.client(new)
        assert promoted.llen(settings.delivery_queue_key) == 1
        assert promoted.exists("dead_letter:webhook:wh_cli0") == 0
        promoted.close()
    finally:
        client.close()
