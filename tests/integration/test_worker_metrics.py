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
