"""HPA for real: metrics-server (built from its Go module) reads the kubelet's CPU figures, and the
chart's HorizontalPodAutoscaler scales the API Deployment above its minimum under load from a
client pod. Runs last in the tier (it leaves the API scaled up)."""

from __future__ import annotations

import json
import sys

import pytest
from node_helpers import NAMESPACE, RELEASE, api_url, eventually, get_json, start_client_pod
from nodecluster import NodeCluster

pytestmark = pytest.mark.node

API = f"{RELEASE}-compliance-reporting-api"

LOAD = r'''
import json, os, threading, time
import httpx

api, seconds = os.environ["API"], float(os.environ["SECONDS"])
stop = time.monotonic() + seconds
done = []

def hammer():
    n = 0
    with httpx.Client(base_url=api, timeout=10) as c:
        while time.monotonic() < stop:
            try:
                c.get("/health")
                n += 1
            except httpx.HTTPError:
                pass
    done.append(n)

threads = [threading.Thread(target=hammer) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("RESULT " + json.dumps({"requests": sum(done)}))
'''


def _api_pod_cpu(cluster: NodeCluster) -> dict[str, str] | None:
    out = cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods", check=False)
    if out.returncode != 0:
        return None
    usage = {p["metadata"]["name"]: c["usage"]["cpu"] for p in json.loads(out.stdout)["items"]
             for c in p["containers"] if c["name"] == "api"}
    return usage or None


def test_the_api_hpa_scales_on_real_cpu_metrics(node_cluster: NodeCluster, node_release: str) -> None:
    hpa = get_json(node_cluster, "hpa", API)
    minimum = hpa["spec"]["minReplicas"]
    usage = eventually(lambda: _api_pod_cpu(node_cluster), timeout=120,
                       message="metrics.k8s.io serves the API pods' CPU (metrics-server)")
    start_client_pod(node_cluster, "client-load", LOAD, {"API": api_url(), "SECONDS": "150"})
    try:
        def scaled() -> dict | None:  # type: ignore[type-arg]
            status = get_json(node_cluster, "hpa", API).get("status", {})
            return status if status.get("desiredReplicas", 0) > minimum else None

        status = eventually(scaled, timeout=180, message="the HPA wants more API replicas", interval=2)
        cpu = next(m["resource"]["current"] for m in status["currentMetrics"] if m["type"] == "Resource")
        assert cpu["averageUtilization"] > hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
        deploy = eventually(
            lambda: (d := get_json(node_cluster, "deployment", API)).get("status", {}).get("readyReplicas", 0) > minimum
            and d, timeout=120, message="more API pods Ready")
        print(f"\nHPA: idle CPU {usage}; under load {cpu['averageUtilization']}% of requests -> desired "
              f"{status['desiredReplicas']}, {deploy['status']['readyReplicas']} API pods Ready", file=sys.stderr)
    finally:
        node_cluster.kubectl("delete", "pod", "client-load", "-n", NAMESPACE, "--wait=false")

