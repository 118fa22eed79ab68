"""The chart with its defaults on a real node: the image built from the Dockerfile runs as pods,
every pod becomes Ready through its real probes, and ``helm test`` passes."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import pytest
from node_helpers import NAMESPACE, Helm, eventually
from nodecluster import NODE_NAME, NodeCluster

pytestmark = pytest.mark.node

# What the chart's defaults run (one pod or more each).
COMPONENTS = {"api", "redis", "operator", "worker-deliveries", "worker-reports"}


def _pods(cluster: NodeCluster, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", NAMESPACE, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cluster.kubectl(*args).stdout)["items"]  # type: ignore[no-any-return]


def _ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True"


def _probe_results(cluster: NodeCluster) -> dict[tuple[str, str, str], dict[str, float]]:
    """The kubelet's own probe counters: (pod, container, probe type) -> {result: count}."""
    text = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/probes").stdout
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for m in re.finditer(r"^prober_probe_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("namespace") != NAMESPACE:
            continue
        key = (labels["pod"], labels["container"], labels["probe_type"])
        out.setdefault(key, {})[labels["result"]] = float(m.group(2))
    return out


def test_every_pod_runs_ready_through_its_probes(node_cluster: NodeCluster, node_release: str) -> None:
    pods = [p for p in _pods(node_cluster) if p["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            in COMPONENTS]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert components == COMPONENTS, components
    not_ready = [p["metadata"]["name"] for p in pods if not _ready(p)]
    assert not_ready == [], node_cluster.describe(NAMESPACE)
    wanted: list[tuple[str, str, str]] = []
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        for s in pod["status"]["containerStatuses"]:
            assert s["ready"] and "running" in s["state"], s
            assert s["imageID"], s  # the image containerd really runs
        for c in pod["spec"]["containers"]:
            probes = [t for t, f in (("Readiness", "readinessProbe"), ("Liveness", "livenessProbe"),
                                     ("Startup", "startupProbe")) if f in c]
            assert probes, f"{pod['metadata']['name']}/{c['name']} has no probe"
            wanted += [(pod["metadata"]["name"], c["name"], t) for t in probes]

    # The kubelet really ran every probe and each one passed (a wrong path, port or command in the
    # chart shows up here as a failure, or as a pod that never becomes Ready).
    def all_probed() -> dict[tuple[str, str, str], dict[str, float]] | None:
        results = _probe_results(node_cluster)
        return results if all(results.get(k, {}).get("successful", 0) >= 1 for k in wanted) else None

    results = eventually(all_probed, timeout=90, message="every probe passed at least once")
    # Failures before a success are what startup (and early readiness) probes are for; a liveness
    # probe failing failureThreshold times in a row would have restarted its container (below).
    early = {f"{k[0].rsplit('-', 2)[0]}/{k[2]}": v["failed"] for k, v in results.items()
             if k in wanted and v.get("failed")}
    print(f"\nprobe failures before success (kubelet counters): {early}", file=sys.stderr)
    restarts = {s["name"]: s["restartCount"] for p in _pods(node_cluster) for s in p["status"]["containerStatuses"]
                if p["metadata"]["labels"].get("app.kubernetes.io/component") in COMPONENTS and s["restartCount"]}
    assert restarts == {}, restarts


def test_helm_test_passes(node_cluster: NodeCluster, node_release: str, helm: Helm) -> None:
    out = helm("test", node_release, "-n", NAMESPACE, "--timeout", "2m")
    assert "Succeeded" in out.stdout, out.stdout


def test_a_probe_on_the_wrong_path_keeps_the_pod_unready(node_cluster: NodeCluster, node_release: str) -> None:
    """The probes are real: the API Deployment's pod template with its readiness probe pointed at a
    path the API does not serve never becomes Ready, and the kubelet says why."""
    deploy = json.loads(node_cluster.kubectl("get", "deployment", "-n", NAMESPACE, "-l",
                                             "app.kubernetes.io/component=api", "-o", "json").stdout)["items"][0]
    name = "probe-check"
    template = deploy["spec"]["template"]
    template["metadata"]["labels"] = {"app": name}
    container = template["spec"]["containers"][0]
    probe = container["readinessProbe"]
    assert "httpGet" in probe, probe
    probe["httpGet"]["path"] = "/no-such-path"
    probe["periodSeconds"] = 1
    container.pop("livenessProbe", None)
    container.pop("startupProbe", None)
    node_cluster.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    })
    try:
        deadline = time.monotonic() + 90
        message = ""
        while time.monotonic() < deadline and "404" not in message:
            events = json.loads(node_cluster.kubectl(
                "get", "events", "-n", NAMESPACE, "--field-selector", "reason=Unhealthy", "-o", "json").stdout)
            message = " ".join(e["message"] for e in events["items"]
                               if e["involvedObject"]["name"].startswith(name))
            time.sleep(1)
        assert "Readiness probe failed" in message and "404" in message, node_cluster.describe(NAMESPACE)
        pods = _pods(node_cluster, f"app={name}")
        assert pods and not any(_ready(p) for p in pods)
        assert all(s.get("state", {}).get("running") for p in pods for s in p["status"]["containerStatuses"])
    finally:
        node_cluster.kubectl("delete", "deployment", name, "-n", NAMESPACE, "--wait=false")
