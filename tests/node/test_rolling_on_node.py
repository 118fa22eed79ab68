"""Rolling changes without loss: while a client pod streams webhooks to a receiver pod, a
``helm upgrade`` changes the delivery workers' pod template (a rolling update) and a delivery
worker pod is force-deleted (``--grace-period=0 --force``). Every accepted webhook ends delivered
or dead-lettered (the ids reconciled against the receiver's log); duplicates are counted and
reported, not hidden."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from node_helpers import (
    NAMESPACE,
    RELEASE,
    RELEASE_VALUES,
    Helm,
    api_url,
    eventually,
    get_json,
    receiver,
    start_client_pod,
    wait_client_pod,
)
from nodecluster import NodeCluster

REPO_CHART = Path(__file__).resolve().parents[2] / "charts" / "compliance-reporting"

pytestmark = pytest.mark.node

DELIVERIES = "app.kubernetes.io/component=worker-deliveries"

# Stream webhooks for SECONDS at RATE/s, then wait until every accepted one is terminal.
STREAM = r'''
import json, os, time
import httpx

api, hook = os.environ["API"], os.environ["HOOK"]
rate, seconds = float(os.environ["RATE"]), float(os.environ["SECONDS"])
key = os.environ["PRODUCER_KEYS"].split(",")[0].strip()
ids, refused = [], 0
with httpx.Client(base_url=api, headers={"X-API-Key": key}, timeout=10) as c:
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        try:
            r = c.post("/webhooks", json={"url": f"{hook}/roll/{i}", "event": "node.roll", "payload": {"i": i}})
            if r.status_code == 202:
                ids.append(r.json()["webhook_id"])
            else:
                refused += 1
        except httpx.HTTPError:
            refused += 1  # not accepted: no promise was made
        i += 1
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    statuses = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        statuses = {w: c.get(f"/webhook-statuses/{w}").json()["status"] for w in ids}
        if set(statuses.values()) <= {"delivered", "failed"}:
            break
        time.sleep(2)
print("RESULT " + json.dumps({"ids": ids, "refused": refused, "statuses": statuses}))
'''


def test_rolling_upgrade_and_a_force_deleted_worker_lose_nothing(
        node_cluster: NodeCluster, node_release: str, helm: Helm) -> None:
    hook = receiver(node_cluster, "roll-receiver")
    start_client_pod(node_cluster, "client-stream", STREAM,
                     {"API": api_url(), "HOOK": hook, "RATE": "10", "SECONDS": "45"})
    eventually(lambda: "roll/" in node_cluster.kubectl("logs", "-n", NAMESPACE, "roll-receiver").stdout,
               timeout=60, message="webhooks flowing")
    before = {p["metadata"]["name"] for p in get_json(node_cluster, "pods", "-l", DELIVERIES)["items"]}

    # A rolling update of the delivery workers: their pod template changes (concurrency).
    t0 = time.monotonic()
    helm("upgrade", RELEASE, str(REPO_CHART), "-n", NAMESPACE, "--reuse-values", *RELEASE_VALUES,
         "--set", "workers.deliveries.concurrency=256", "--wait", "--timeout", "3m")
    upgrade_s = time.monotonic() - t0
    after = {p["metadata"]["name"]: p for p in get_json(node_cluster, "pods", "-l", DELIVERIES)["items"]
             if not p["metadata"].get("deletionTimestamp")}
    assert after and not (set(after) & before), (before, set(after))

    # A worker killed without any grace while deliveries are in flight.
    victim = sorted(after)[0]
    node_cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force")

    result = wait_client_pod(node_cluster, "client-stream", timeout=300)
    ids, statuses = result["ids"], result["statuses"]
    assert len(ids) > 200, result["refused"]
    not_terminal = {w: s for w, s in statuses.items() if s not in ("delivered", "failed")}
    assert not_terminal == {}, f"{len(not_terminal)} accepted webhooks neither delivered nor dead-lettered"
    assert set(statuses) == set(ids)

    log = node_cluster.kubectl("logs", "-n", NAMESPACE, "roll-receiver").stdout
    received = Counter(re.findall(r"^webhook-id: (\S+)$", log, re.M))
    delivered = {w for w, s in statuses.items() if s == "delivered"}
    missing = delivered - set(received)
    assert missing == set(), f"{len(missing)} webhooks marked delivered never reached the receiver"
    duplicates = sum(c - 1 for c in received.values() if c > 1)
    dead = len(ids) - len(delivered)
    print(f"\nrolling: {len(ids)} accepted, {len(delivered)} delivered, {dead} dead-lettered, "
          f"{duplicates} duplicate deliveries, {result['refused']} refused at intake; "
          f"helm upgrade --wait {upgrade_s:.1f}s; force-deleted {victim}", file=sys.stderr)
