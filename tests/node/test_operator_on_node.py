"""The operator (the chart's own pod) with real pods: a backlog makes the chart's WorkerAutoscaler
add delivery-worker pods that really start and take deliveries; without a backlog it scales down,
having marked pods with pod-deletion-cost first, and the ReplicaSet controller keeps the pod
marked most expensive. (Whether a pod still holds a delivery at that moment depends on timing,
so a busy pod is not always there; tests/k8s/test_operator_e2e.py proves one survives.) A DeadLetterReplay runs
as a Job whose pod really replays dead letters to a receiver pod."""

from __future__ import annotations

import base64
import json
import os
import re
import sys

import pytest
from node_helpers import (
    NAMESPACE,
    eventually,
    get_json,
    receiver,
    run_client_pod,
    script_pod,
    start_client_pod,
    wait_client_pod,
)
from nodecluster import NodeCluster

pytestmark = pytest.mark.node

GROUP = "reporting.compliance.io"
DELIVERIES = "app.kubernetes.io/component=worker-deliveries"

# Submit N webhooks to HOOK<i> (RATE per second when set); with WAIT, poll until every status is in WAIT.
SUBMIT = r'''
import json, os, time
import httpx

api, hook, n = os.environ["API"], os.environ["HOOK"], int(os.environ["N"])
wait = set(filter(None, os.environ.get("WAIT", "").split(",")))
key = os.environ["PRODUCER_KEYS"].split(",")[0].strip()
ids = []
with httpx.Client(base_url=api, headers={"X-API-Key": key}, timeout=10) as c:
    rate = float(os.environ.get("RATE", "0"))
    start = time.monotonic()
    for i in range(n):
        r = c.post("/webhooks", json={"url": f"{hook}{i}", "event": "node.test", "payload": {"i": i}})
        assert r.status_code == 202, (r.status_code, r.text)
        ids.append(r.json()["webhook_id"])
        if rate:
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    statuses = {}
    deadline = time.monotonic() + float(os.environ.get("DEADLINE", "150"))
    while wait and time.monotonic() < deadline:
        statuses = {w: c.get(f"/webhook-statuses/{w}").json()["status"] for w in ids}
        if set(statuses.values()) <= wait:
            break
        time.sleep(1)
print("RESULT " + json.dumps({"ids": ids, "statuses": statuses}))
'''

# A destination that holds /slow/... 10 s before its 200;
# it prints the peer address of each request (which worker pod delivered it).
DESTINATION = r'''
import http.server, socketserver, sys, time

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        print(f"PEER {self.client_address[0]} {self.path}", flush=True)
        time.sleep(10 if self.path.startswith("/slow/") else 0)  # under the delivery read timeout (15 s)
        self.send_response(200)
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


def test_backlog_scales_delivery_workers_up_and_down(
        node_cluster: NodeCluster, node_release: str) -> None:
    wa = _autoscaler(node_cluster)
    name = wa["metadata"]["name"]
    original = {k: wa["spec"].get(k) for k in ("pollingIntervalSeconds", "targetTasksPerReplica", "minReplicas",
                                                "maxReplicas", "behavior")}
    try:
        _scale_and_check(node_cluster, name)
    finally:  # as the chart rendered it: a later `helm upgrade` finds no field changed under it
        node_cluster.kubectl("patch", f"workerautoscalers.{GROUP}", name, "-n", NAMESPACE, "--type=merge",
                             "-p", json.dumps({"spec": original}))


def _scale_and_check(node_cluster: NodeCluster, name: str) -> None:
    node_cluster.kubectl("patch", f"workerautoscalers.{GROUP}", name, "-n", NAMESPACE, "--type=merge", "-p",
                         json.dumps({"spec": {"pollingIntervalSeconds": 2, "targetTasksPerReplica": 5,
                                              "minReplicas": 1, "maxReplicas": 3,
                                              "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
                                                           "scaleDown": {"stabilizationWindowSeconds": 0,
                                                                         "maxStep": 4}}}}))
    dest = script_pod(node_cluster, "slow-destination", DESTINATION)
    before = set(_ready_pods(node_cluster))

    # A backlog for 60 s: 2 deliveries a second that the destination holds 10 s each (then 200).
    start_client_pod(node_cluster, "client-backlog", SUBMIT,
                     {"API": _api(), "HOOK": f"{dest}/slow/", "N": "120", "RATE": "2", "WAIT": "delivered"})
    up = eventually(lambda: (p := _ready_pods(node_cluster)) and len(p) == 3 and p, timeout=90,
                    message="3 delivery-worker pods Ready")
    added = set(up) - before
    assert added, (before, set(up))
    ips = {p["status"]["podIP"]: n for n, p in up.items()}

    def peers() -> dict[str, set[str]]:
        log = node_cluster.kubectl("logs", "-n", NAMESPACE, "slow-destination").stdout
        seen: dict[str, set[str]] = {}
        for ip, path in re.findall(r"^PEER (\S+) (\S+)$", log, re.M):
            seen.setdefault(ips.get(ip, ip), set()).add(path)
        return seen

    # The added pods really consume: the destination sees deliveries from their addresses.
    eventually(lambda: added & set(peers()), timeout=60, message=f"a delivery from an added pod ({added})")

    # The backlog ends; the autoscaler scales down, marking busy pods expensive to delete first.
    costs: dict[str, str] = {}

    def one_left() -> dict[str, dict] | None:  # type: ignore[type-arg]
        pods = get_json(node_cluster, "pods", "-l", DELIVERIES)["items"]
        for p in pods:
            cost = (p["metadata"].get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost")
            if cost is not None:
                costs[p["metadata"]["name"]] = cost
        ready = _ready_pods(node_cluster)
        return ready if len(ready) == 1 and len(pods) == 1 else None

    left = eventually(one_left, timeout=150, message="scaled down to 1 pod", interval=0.5)
    result = wait_client_pod(node_cluster, "client-backlog", timeout=120)
    assert set(result["statuses"].values()) == {"delivered"}, result["statuses"]
    (survivor,) = left
    removed = set(up) - {survivor}
    assert costs, "the operator set no pod-deletion-cost before scaling down"
    assert removed and survivor in up, (survivor, up)
    # Not asserted here: that the survivor's cost was the highest. The scale-down can take two
    # steps (3 to 2 to 1) with the pods marked again before each, and a pod busy (cost 1) at the
    # first step may be idle (0) at the second, so the costs polled here can be out of date by a
    # step (a run failed so: a pod last seen at 1 was removed once every pod was idle). That
    # the busiest pod survives is proven deterministically by tests/k8s/test_operator_e2e.py.
    print(f"\nautoscaler: 3 pods on backlog, added {sorted(added)} delivered; scale-down kept {survivor}, "
          f"deletion costs {costs}", file=sys.stderr)

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
