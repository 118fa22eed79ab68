"""The operator (the chart's own pod) with real pods: a backlog makes the chart's WorkerAutoscaler
add delivery-worker pods that really start and take deliveries; without a backlog it scales down
and keeps the busy pod (pod-deletion-cost, honoured by the ReplicaSet controller). A
DeadLetterReplay runs as a Job whose pod really replays dead letters to a receiver pod."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from node_helpers import NAMESPACE, eventually, get_json, receiver, run_client_pod, script_pod
from nodecluster import NodeCluster

pytestmark = pytest.mark.node

GROUP = "reporting.compliance.io"
DELIVERIES = "app.kubernetes.io/component=worker-deliveries"

# Submit N webhooks to HOOK/<path><i>; with WAIT, poll until every status is in WAIT.
SUBMIT = r'''
import json, os, time
import httpx

api, hook, n = os.environ["API"], os.environ["HOOK"], int(os.environ["N"])
wait = set(filter(None, os.environ.get("WAIT", "").split(",")))
key = os.environ["PRODUCER_KEYS"].split(",")[0].strip()
ids = []
with httpx.Client(base_url=api, headers={"X-API-Key": key}, timeout=10) as c:
    for i in range(n):
        r = c.post("/webhooks", json={"url": f"{hook}{i}", "event": "node.test", "payload": {"i": i}})
        assert r.status_code == 202, (r.status_code, r.text)
        ids.append(r.json()["webhook_id"])
    statuses = {}
    deadline = time.monotonic() + float(os.environ.get("DEADLINE", "150"))
    while wait and time.monotonic() < deadline:
        statuses = {w: c.get(f"/webhook-statuses/{w}").json()["status"] for w in ids}
        if set(statuses.values()) <= wait:
            break
        time.sleep(1)
print("RESULT " + json.dumps({"ids": ids, "statuses": statuses}))
'''

# A destination that answers 503 after 2 s on /slow/..., and holds /hold/... 120 s before a 200;
# it prints the peer address of each request (which worker pod delivered it).
DESTINATION = r'''
import http.server, socketserver, sys, time

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        print(f"PEER {self.client_address[0]} {self.path}", flush=True)
        hold = self.path.startswith("/hold/")
        time.sleep(120 if hold else 2)
        self.send_response(200 if hold else 503)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a):
        pass

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

S(("0.0.0.0", 8080), H).serve_forever()
'''


def _api() -> str:
    from node_helpers import api_url

    return api_url()


def _autoscaler(cluster: NodeCluster) -> dict:  # type: ignore[type-arg]
    items = get_json(cluster, f"workerautoscalers.{GROUP}")["items"]
    return next(a for a in items if a["spec"]["scaleTargetRef"]["name"].endswith("worker-deliveries"))


def _ready_pods(cluster: NodeCluster) -> dict[str, dict]:  # type: ignore[type-arg]
    pods = get_json(cluster, "pods", "-l", DELIVERIES)["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


def test_backlog_scales_delivery_workers_up_and_down_keeping_the_busy_pod(
        node_cluster: NodeCluster, node_release: str) -> None:
    wa = _autoscaler(node_cluster)
    name = wa["metadata"]["name"]
    node_cluster.kubectl("patch", f"workerautoscalers.{GROUP}", name, "-n", NAMESPACE, "--type=merge", "-p",
                         json.dumps({"spec": {"pollingIntervalSeconds": 2, "targetTasksPerReplica": 5,
                                              "minReplicas": 1, "maxReplicas": 3,
                                              "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
                                                           "scaleDown": {"stabilizationWindowSeconds": 0,
                                                                         "maxStep": 4}}}}))
    dest = script_pod(node_cluster, "slow-destination", DESTINATION)
    before = set(_ready_pods(node_cluster))

    # A backlog: 40 deliveries that each take 2 s and fail (503), retried with backoff.
    backlog = run_client_pod(node_cluster, "client-backlog", SUBMIT,
                             {"API": _api(), "HOOK": f"{dest}/slow/", "N": "40"})
    up = eventually(lambda: (p := _ready_pods(node_cluster)) and len(p) == 3 and p, timeout=120,
                    message="3 delivery-worker pods Ready")
    added = set(up) - before
    assert added, (before, set(up))
    # The new pods really take deliveries: the destination sees requests from their addresses.
    ips = {p["status"]["podIP"]: n for n, p in up.items()}

    def peers() -> dict[str, set[str]]:
        log = node_cluster.kubectl("logs", "-n", NAMESPACE, "slow-destination").stdout
        seen: dict[str, set[str]] = {}
        for ip, path in re.findall(r"^PEER (\S+) (\S+)$", log, re.M):
            seen.setdefault(ips.get(ip, ip), set()).add(path)
        return seen

    eventually(lambda: added & set(peers()), timeout=120,
               message=f"a request from an added pod ({added}); seen {peers()}")

    # One long delivery makes one pod busy; the 40 end dead-lettered, so the backlog goes.
    hold = run_client_pod(node_cluster, "client-hold", SUBMIT, {"API": _api(), "HOOK": f"{dest}/hold/", "N": "1"})
    busy = eventually(lambda: next((n for n, paths in peers().items() if "/hold/0" in paths), None), timeout=60,
                      message="the held delivery reached the destination")
    statuses = run_client_pod(node_cluster, "client-status", STATUS, {"API": _api(), "IDS": ",".join(backlog["ids"]),
                                                                     "WAIT": "failed"})
    assert set(statuses.values()) == {"failed"}, statuses
    left = eventually(lambda: (p := _ready_pods(node_cluster)) and len(p) == 1 and p, timeout=120,
                      message="scaled down to 1 pod")
    assert list(left) == [busy], f"the busy pod {busy} was removed; {list(left)} kept"
    survivor = get_json(node_cluster, "pod", busy)
    assert survivor["metadata"]["annotations"].get("controller.kubernetes.io/pod-deletion-cost") == "1"
    assert len(hold["ids"]) == 1


STATUS = r'''
import json, os, time
import httpx

api, ids = os.environ["API"], os.environ["IDS"].split(",")
wait = set(os.environ["WAIT"].split(","))
key = os.environ["PRODUCER_KEYS"].split(",")[0].strip()
statuses = {}
with httpx.Client(base_url=api, headers={"X-API-Key": key}, timeout=10) as c:
    deadline = time.monotonic() + float(os.environ.get("DEADLINE", "150"))
    while time.monotonic() < deadline:
        statuses = {w: c.get(f"/webhook-statuses/{w}").json()["status"] for w in ids}
        if set(statuses.values()) <= wait:
            break
        time.sleep(1)
print("RESULT " + json.dumps(statuses))
'''


def test_dead_letter_replay_job_replays_to_a_receiver_pod(node_cluster: NodeCluster, node_release: str) -> None:
    wrong = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    hook = receiver(node_cluster, "dlq-receiver", secret=wrong)  # answers 401: dead-lettered at once
    n = 8
    first = run_client_pod(node_cluster, "client-dlq", SUBMIT,
                           {"API": _api(), "HOOK": f"{hook}/dlq/", "N": str(n), "WAIT": "failed"})
    assert set(first["statuses"].values()) == {"failed"}, first["statuses"]
    # The receiver now knows the release's secret: a replay can succeed.
    node_cluster.kubectl("delete", "pod", "dlq-receiver", "-n", NAMESPACE, "--wait=true", "--grace-period=1")
    receiver(node_cluster, "dlq-receiver")
    node_cluster.apply({
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "DeadLetterReplay",
        "metadata": {"name": "replay-node", "namespace": NAMESPACE},
        "spec": {"selector": {"destination": hook, "limit": 100}, "ratePerSecond": 50, "dryRun": False,
                 "envFrom": [{"secretRef": {"name": "compliance-compliance-reporting"}},
                             {"configMapRef": {"name": "compliance-compliance-reporting"}}]},
    })
    status = eventually(
        lambda: (s := get_json(node_cluster, f"deadletterreplays.{GROUP}", "replay-node").get("status", {}))
        .get("phase") in ("Succeeded", "Failed") and s, timeout=150, message="replay finished")
    assert status["phase"] == "Succeeded", status
    assert (status["matched"], status["replayed"], status["failed"]) == (n, n, 0), status
    job = get_json(node_cluster, "job", status["jobName"])
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]), job["status"]
    pods = get_json(node_cluster, "pods", "-l", f"batch.kubernetes.io/job-name={status['jobName']}")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    # The replayed webhooks reached the receiver pod, signed with the release's secret.
    log = eventually(lambda: (lg := node_cluster.kubectl("logs", "-n", NAMESPACE, "dlq-receiver").stdout)
                     .count("signature: valid") >= n and lg, timeout=90, message="replays delivered")
    assert len(set(re.findall(r"^--- POST (/dlq/\d+)$", log, re.M))) == n
    assert "INVALID" not in log
