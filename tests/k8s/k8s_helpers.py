"""Small helpers shared by the tests that run against the real control plane (tests/k8s)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from tests.chart.render import monitoring_crds_dir

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "manifests" / "crds"
SAMPLES_DIR = REPO / "manifests" / "samples"
CHART_DIR = REPO / "charts" / "compliance-reporting"
TOOLS_SCRIPT = REPO / "scripts" / "k8s-tools.sh"
GROUP = "reporting.compliance.io"
VERSION = "v1alpha1"
AUTOSCALERS = "workerautoscalers"
REPLAYS = "deadletterreplays"

T = TypeVar("T")


def yaml_docs(path: Path | str) -> list[dict[str, Any]]:
    """Every non-empty YAML document in a file (or a string of YAML)."""
    text = path.read_text() if isinstance(path, Path) else path
    return [d for d in yaml.safe_load_all(text) if d]


def eventually(check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.2,
               message: str = "") -> T:
    """Call ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message or 'condition'} not reached within {timeout}s; last: {last!r}")
        time.sleep(interval)


def crd_established(api: client.ApiClient, name: str) -> bool:
    """True once the CRD's Established and NamesAccepted conditions are True."""
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    conds = {c.type: c.status for c in (crd.status.conditions or [])}
    return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"


def apply_crds(api: client.ApiClient, docs: Iterable[Mapping[str, Any]], *, timeout: float = 30) -> list[str]:
    """Create (or replace) CRDs and wait until each is Established and served."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(doc, field_validation="Strict")
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body = {**doc, "metadata": {**doc["metadata"],
                                        "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, body, field_validation="Strict")
        names.append(name)
    for name in names:
        eventually(lambda n=name: crd_established(api, n), timeout=timeout, message=f"CRD {name} Established")
    # Established is set before the discovery doc and handlers are fully in place: wait for a list.
    for doc in docs:
        spec = doc["spec"]
        group, plural = spec["group"], spec["names"]["plural"]
        for v in spec["versions"]:
            eventually(lambda g=group, v=v["name"], p=plural: _lists(api, g, v, p), timeout=timeout,
                       message=f"{plural}.{group}/{v['name']} served")
    return names


def _lists(api: client.ApiClient, group: str, version: str, plural: str) -> bool:
    try:
        client.CustomObjectsApi(api).list_cluster_custom_object(group, version, plural, limit=1)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def new_client(kubeconfig: Path, *, impersonate: str | None = None,
               groups: Iterable[str] = ()) -> client.ApiClient:
    """A fresh ApiClient for the kubeconfig, optionally impersonating a user (and groups)."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    if impersonate:
        api.set_default_header("Impersonate-User", impersonate)
        # The client keeps one value per header name; several groups would need raw requests.
        for group in groups:
            api.set_default_header("Impersonate-Group", group)
    return api


def raw(api: client.ApiClient, method: str, path: str, *, body: Any = None,
        query: Mapping[str, str] | None = None, content_type: str = "application/json",
        accept: str = "application/json") -> tuple[int, Any, list[str]]:
    """Any request as (status, parsed JSON body, Warning headers); never raises on an error status."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    params = api.param_serialize(method=method, resource_path=path, query_params=list((query or {}).items()),
                                 header_params=headers, body=body, auth_settings=["BearerToken"])
    response = api.call_api(*params)
    data = response.read()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode(errors="replace")
    warnings = response.getheaders().get("Warning")
    return response.status, parsed, [w for w in (warnings or "").split(", 299 ") if w]


def k8s_tools() -> Path:
    """The bin dir holding kubectl, helm3 and helm4 (scripts/k8s-tools.sh; cached after the first run)."""
    proc = subprocess.run(["bash", str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{TOOLS_SCRIPT.name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def run(cmd: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 120,
        check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a CLI (helm, kubectl); on failure the assertion shows its stdout and stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, cwd=cwd)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} -> exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def can_i(api: client.ApiClient, *, verb: str, resource: str, group: str = "", subresource: str = "",
          namespace: str = "", name: str = "") -> bool:
    """SelfSubjectAccessReview: may the client's (possibly impersonated) identity do this?"""
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource or None,
                namespace=namespace or None, name=name or None))))
    return bool(review.status.allowed)


def serviceaccount_kubeconfig(admin: client.ApiClient, *, server: str, ca_file: Path, namespace: str,
                              name: str, path: Path, seconds: int = 3600) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount itself (a TokenRequest token),
    as a pod running under it would: no impersonation, RBAC applies to every call."""
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))).status.token
    user = f"system:serviceaccount:{namespace}:{name}"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "envtest", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "envtest", "user": user, "namespace": namespace}}],
    }))
    path.chmod(0o600)
    return path


def monitoring_crds() -> list[dict[str, Any]]:
    """The Prometheus operator's real monitoring.coreos.com CRDs (ServiceMonitor, PodMonitor,
    PrometheusRule), fetched once by scripts/monitoring-crds.sh, so the chart's monitoring objects
    meet the schemas a cluster with the Prometheus operator enforces."""
    return [doc for path in sorted(monitoring_crds_dir().glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]
