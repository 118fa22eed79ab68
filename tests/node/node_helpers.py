"""Helpers shared by the node tier's tests (tests/node)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from nodecluster import NodeCluster

NAMESPACE = "compliance"
RELEASE = "compliance"


class Helm:
    """``helm4`` against the node's cluster, with private Helm directories."""

    def __init__(self, cluster: NodeCluster, home: Path) -> None:
        self.cluster = cluster
        self.env = {**cluster.env(), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.cluster.tools_dir / "helm4"), *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} -> exit {proc.returncode}\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}\n{self.cluster.describe(NAMESPACE)}")
        return proc


# The chart's defaults, with the images pointed at the local build (no registry here) and the
# cluster's pod and Service ranges opened as webhook targets (in-cluster receivers).
IMAGE = "compliance-reporting:node"
RELEASE_VALUES = (
    "--set", "image.repository=compliance-reporting", "--set", "image.tag=node",
    "--set", "image.pullPolicy=Never", "--set", "redis.image=compliance-node/redis:bookworm",
    "--set-string", "config.COMPLIANCE_ALLOWED_TARGET_NETWORKS=10.244.0.0/24\\,10.0.0.0/24",
)
SECRET = f"{RELEASE}-compliance-reporting"
# The chart's pod and container security settings, for the tier's own pods.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}


def api_url() -> str:
    """The API's Service by its cluster DNS name."""
    return f"http://{RELEASE}-compliance-reporting-api.{NAMESPACE}.svc.cluster.local:8000"


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}


def pod_phase(cluster: NodeCluster, name: str) -> str:
    out = cluster.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout.strip()


def wait_pod_ready(cluster: NodeCluster, name: str, timeout: float = 90) -> None:
    proc = cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", NAMESPACE,
                           f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
    assert proc.returncode == 0, f"{name} not Ready: {proc.stderr}\n{cluster.describe(NAMESPACE)}"


def receiver(cluster: NodeCluster, name: str, secret: str | None = None) -> str:
    """A pod running ``compliance receiver --secret <the release's webhook secret>`` (or ``secret``;
    401 on a bad signature) behind a Service; returns its base URL by cluster DNS name."""
    env = [{"name": "WHSEC", "value": secret}] if secret else [_secret_env("WHSEC", "COMPLIANCE_WEBHOOK_SECRETS")]
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {
            "securityContext": POD_SECURITY, "automountServiceAccountToken": False,
            "containers": [{
                "name": "receiver", "image": IMAGE, "imagePullPolicy": "Never",
                "args": ["receiver", "--host", "0.0.0.0", "--port", "8080", "--secret", "$(WHSEC)"],
                "env": env,
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                "securityContext": CONTAINER_SECURITY,
            }],
        },
    })
    cluster.apply({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8080, "targetPort": 8080}]},
    })
    wait_pod_ready(cluster, name)
    return f"http://{name}.{NAMESPACE}.svc.cluster.local:8080"


def start_client_pod(cluster: NodeCluster, name: str, script: str, env: dict[str, str]) -> None:
    """Start ``python -c script`` in a pod of the project's image (the release's producer and admin
    keys in PRODUCER_KEYS / ADMIN_KEYS)."""
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never", "securityContext": POD_SECURITY, "automountServiceAccountToken": False,
            "containers": [{
                "name": "client", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["python", "-u", "-c", script],
                "env": [{"name": k, "value": v} for k, v in env.items()]
                + [_secret_env("PRODUCER_KEYS", "COMPLIANCE_PRODUCER_API_KEYS"),
                   _secret_env("ADMIN_KEYS", "COMPLIANCE_ADMIN_API_KEYS")],
                "securityContext": CONTAINER_SECURITY,
            }],
        },
    })


def wait_client_pod(cluster: NodeCluster, name: str, timeout: float = 240) -> dict[str, Any]:
    """Wait for a client pod to finish; returns the JSON it printed after ``RESULT ``."""
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = pod_phase(cluster, name)
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    logs = cluster.kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
    assert phase == "Succeeded", f"{name}: {phase}\n{logs[-4000:]}\n{cluster.describe(NAMESPACE)}"
    line = next((ln for ln in logs.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, logs[-4000:]
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false")
    return json.loads(line[len("RESULT "):])  # type: ignore[no-any-return]


def run_client_pod(cluster: NodeCluster, name: str, script: str, env: dict[str, str],
                   timeout: float = 240) -> dict[str, Any]:
    """``start_client_pod`` then ``wait_client_pod``."""
    start_client_pod(cluster, name, script, env)
    return wait_client_pod(cluster, name, timeout)

def script_pod(cluster: NodeCluster, name: str, script: str, port: int = 8080) -> str:
    """A long-running pod of the project's image running ``python -c script`` behind a Service
    (the script serves ``port``); returns its base URL by cluster DNS name."""
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {
            "securityContext": POD_SECURITY, "automountServiceAccountToken": False,
            "containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["python", "-u", "-c", script],
                "ports": [{"containerPort": port}],
                "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
                "securityContext": CONTAINER_SECURITY,
            }],
        },
    })
    cluster.apply({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
    })
    wait_pod_ready(cluster, name)
    return f"http://{name}.{NAMESPACE}.svc.cluster.local:{port}"


def get_json(cluster: NodeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-n", NAMESPACE, "-o", "json").stdout)


def eventually(check: Any, *, timeout: float, message: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not within {timeout}s; last: {last!r}")
        time.sleep(interval)
