"""Worker metrics are correct under prefork: children's counters reach the worker's endpoint."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from compliance.localredis import free_port
from tests.support.services import wait_until

pytestmark = pytest.mark.timeout(120)


def delivered_count(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "webhook_deliveries":
            for sample in family.samples:
                if sample.name == "webhook_deliveries_total" and sample.labels.get("outcome") == "delivered":
                    return sample.value
    return 0.0


def test_prefork_children_counters_are_aggregated(api, receiver, start_worker):
    port = free_port()
    # a prefork pool of 3 consuming the delivery queue, metrics served by the parent process
    start_worker(kind="reports", concurrency=3, extra_env={
        "COMPLIANCE_QUEUE_NAME": "compliance_webhooks",
        "COMPLIANCE_WORKER_METRICS_PORT": str(port),
    })
    for i in range(6):
        assert api.post("/webhooks", json={"url": receiver.url(), "event": "e", "payload": {"i": i}}).status_code == 202
    receiver.wait_for(6, timeout=60)
    assert wait_until(lambda: delivered_count(port) == 6, timeout=30)


def answers(host: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{host}:{port}/metrics", timeout=5).status_code == 200
    except httpx.ConnectError:
        return False


def test_metrics_bind_to_the_configured_address(start_worker):
    # 127.0.0.0/8 is loopback on Linux: a socket bound to every interface (0.0.0.0) answers on
    # 127.0.0.2 as well, one bound to 127.0.0.1 only there.
    port = free_port()
    start_worker(kind="reports", concurrency=1, extra_env={
        "COMPLIANCE_WORKER_METRICS_PORT": str(port), "COMPLIANCE_WORKER_METRICS_HOST": "127.0.0.1"})
    assert answers("127.0.0.1", port)  # the worker is ready: its endpoint was started before
    assert not answers("127.0.0.2", port)
