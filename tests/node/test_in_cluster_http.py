"""In-cluster HTTP: a client pod submits webhooks and a report to the API's Service by its DNS name,
and a receiver pod (``compliance receiver --secret``, which answers 401 to a bad signature) gets
every one of them signed. Nothing goes through a port-forward or the host."""

from __future__ import annotations

import re
import time

import pytest
from node_helpers import NAMESPACE, api_url, receiver, run_client_pod
from nodecluster import NodeCluster

pytestmark = pytest.mark.node

CLIENT = r'''
import json, os, sys, time
import httpx

api, hook = os.environ["API"], os.environ["HOOK"]
key = os.environ["PRODUCER_KEYS"].split(",")[0].strip()
n = int(os.environ["N"])
h = {"X-API-Key": key}
out = {"health": httpx.get(f"{api}/health", timeout=10).status_code, "accepted": [], "report": None}
with httpx.Client(base_url=api, headers=h, timeout=10) as c:
    for i in range(n):
        r = c.post("/webhooks", json={"url": f"{hook}/hooks/{i}", "event": "node.test", "payload": {"i": i}})
        assert r.status_code == 202, (r.status_code, r.text)
        out["accepted"].append(r.json()["webhook_id"])
    evidence = {"account": {"root": {"mfa_enabled": True, "access_keys_present": False}},
                "storage": {"buckets": [{"name": "logs", "public": False, "encrypted": True,
                                         "block_public_access": True, "versioning": True}]}}
    r = c.post("/reports", json={"framework": "cloud-baseline", "subject": "node-tier", "evidence": evidence,
                                 "webhook_url": f"{hook}/hooks/report"})
    assert r.status_code == 202, (r.status_code, r.text)
    report_id = r.json()["report_id"]
    deadline = time.monotonic() + 120
    statuses = {}
    while time.monotonic() < deadline:
        statuses = {w: c.get(f"/webhook-statuses/{w}").json()["status"] for w in out["accepted"]}
        report = c.get(f"/reports/{report_id}").json()
        # the report's webhook has no status record until the report is generated (404)
        if all(s == "delivered" for s in statuses.values()) and report.get("webhook_id") and \
                c.get(f"/webhook-statuses/{report['webhook_id']}").json().get("status") == "delivered":
            break
        time.sleep(1)
    out["statuses"] = statuses
    out["report"] = report
print("RESULT " + json.dumps(out))
'''


def test_client_pod_to_api_by_dns_and_signed_webhooks_to_a_receiver_pod(
        node_cluster: NodeCluster, node_release: str) -> None:
    hook = receiver(node_cluster, "receiver")
    n = 20
    result = run_client_pod(node_cluster, "client-http", CLIENT, {"API": api_url(), "HOOK": hook, "N": str(n)})
    assert result["health"] == 200
    assert len(result["accepted"]) == n
    assert set(result["statuses"].values()) == {"delivered"}, result["statuses"]
    report = result["report"]
    assert report["status"] == "completed", report
    # The receiver pod's own log: every webhook arrived there, each with a valid signature.
    deadline = time.monotonic() + 30
    while True:
        log = node_cluster.kubectl("logs", "-n", NAMESPACE, "receiver").stdout
        seen = set(re.findall(r"^webhook-id: (\S+)$", log, re.M))
        if set(result["accepted"]) | {report["webhook_id"]} <= seen or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(result["accepted"]) <= seen
    assert report["webhook_id"] in seen
    assert log.count("signature: valid") >= n + 1
    assert "INVALID" not in log
