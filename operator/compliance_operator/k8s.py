"""The only module that talks to the Kubernetes API (besides kopf's own watching/patching).

Plain JSON over the kubernetes client's ApiClient: dicts in, dicts out, merge patches only.
Every call here is in the RBAC list of docs/operator.md; keep the two in step.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client as kclient
from kubernetes import config as kconfig

from compliance_operator import GROUP, VERSION
from compliance_operator.policy import DELETION_COST_ANNOTATION

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class NotFound(ApiError):
    """404: the object (or the whole resource type) does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class Conflict(ApiError):
    """409: the object already exists, or a write lost a race with another writer."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def api_error(status: int, message: str) -> ApiError:
    """The exception for a non-2xx status: NotFound, Conflict, or the plain ApiError."""
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return ApiError(status, message)


class Kube:
    """Typed helpers over one ApiClient."""

    def __init__(self, api: kclient.ApiClient, *, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    @classmethod
    def from_environment(cls, *, timeout: float) -> Kube:
        """In-cluster ServiceAccount when present, else $KUBECONFIG / ~/.kube/config."""
        configuration = kclient.Configuration()
        try:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kconfig.ConfigException:
            kconfig.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(kclient.ApiClient(configuration), timeout=timeout)

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()  # type: ignore[no-untyped-call]

    def _call(self, method: str, path: str, *, body: Any = None,
              query: Mapping[str, str] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH if method == "PATCH" else "application/json"
        params = self._api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self._api.call_api(*params, _request_timeout=self._timeout)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise api_error(response.status, (data or b"").decode(errors="replace")[:500])
        return json.loads(data) if data else {}

    # --- WorkerAutoscaler -------------------------------------------------------------------------
    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (secrets get)."""
        data = self.secret_data(namespace, name)
        if key not in data:
            raise KeyError(f"secret {namespace}/{name} has no key {key!r}")
        return data[key]

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """Every key of a Secret, decoded (secrets get)."""
        secret = self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return {key: base64.b64decode(raw).decode() for key, raw in (secret.get("data") or {}).items()}

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """The Deployment (deployments get)."""
        return self._call("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Write spec.replicas through the scale subresource (deployments/scale patch)."""
        self._call("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
                   body={"spec": {"replicas": replicas}})

    def hpas_targeting(self, namespace: str, deployment: str) -> list[str]:
        """Names of HPAs whose scaleTargetRef is this Deployment (horizontalpodautoscalers list)."""
        try:
            hpas = self._call("GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers")
        except NotFound:  # autoscaling/v2 not served: no HPA can target it
            return []
        out = []
        for hpa in hpas.get("items") or []:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == deployment:
                out.append(str(hpa["metadata"]["name"]))
        return out

    def pods_of(self, deployment: Mapping[str, Any]) -> dict[str, str | None]:
        """Running pods of a Deployment -> their deletion-cost annotation (pods list)."""
        meta = deployment["metadata"]
        match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        pods = self._call("GET", f"/api/v1/namespaces/{meta['namespace']}/pods",
                          query={"labelSelector": selector} if selector else None)
        out: dict[str, str | None] = {}
        for pod in pods.get("items") or []:
            pmeta = pod.get("metadata") or {}
            labels = pmeta.get("labels") or {}
            if pmeta.get("deletionTimestamp") or any(labels.get(k) != v for k, v in match.items()):
                continue
            out[str(pmeta["name"])] = (pmeta.get("annotations") or {}).get(DELETION_COST_ANNOTATION)
        return out

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        """Annotate a pod with controller.kubernetes.io/pod-deletion-cost (pods patch)."""
        self._call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}",
                   body={"metadata": {"annotations": {DELETION_COST_ANNOTATION: str(cost)}}})

    # --- own resources ------------------------------------------------------------------------------
    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge into a CR's status subresource (<plural>/status patch)."""
        self._call("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
                   body={"status": dict(status)})

    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our CRs, or None (<plural> get)."""
        try:
            return self._call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}")
        except NotFound:
            return None

    # --- DeadLetterReplay -----------------------------------------------------------------------------
    def create_job(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job, or return the existing one of the same name if we own it (jobs create/get).

        Returns (job, created). A same-named Job owned by something else is an error, never adopted.
        """
        meta = job["metadata"]
        with contextlib.suppress(Conflict):  # already there: ours (a restart, a retry) or someone else's
            return self._call("POST", f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs", body=job), True
        existing = self.job(meta["namespace"], meta["name"])
        if existing is None:
            raise Conflict(f"job {meta['name']} exists but cannot be read")
        want = {ref["uid"] for ref in meta.get("ownerReferences", [])}
        have = {ref.get("uid") for ref in (existing.get("metadata") or {}).get("ownerReferences") or []}
        if not want & have:
            raise Conflict(f"job {meta['name']} exists and is not owned by this replay")
        return existing, False

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Job, or None (jobs get)."""
        try:
            return self._call("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        except NotFound:
            return None

    def termination_message(self, namespace: str, job_name: str) -> str | None:
        """The replay container's termination message from the Job's newest pod (pods list)."""
        pods = self._call("GET", f"/api/v1/namespaces/{namespace}/pods",
                          query={"labelSelector": f"batch.kubernetes.io/job-name={job_name}"})
        items = [p for p in pods.get("items") or []
                 if ((p.get("metadata") or {}).get("labels") or {}).get("batch.kubernetes.io/job-name")
                 == job_name]
        items.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        for pod in reversed(items):
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                if terminated.get("message"):
                    return str(terminated["message"])
        return None


def event(body: Mapping[str, Any], *, kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event (``kind`` Normal or Warning) on the object (events create), via kopf."""
    target = body if isinstance(body, kopf.Body) else kopf.Body(cast("kopf.RawBody", dict(body)))
    kopf.event(target, type=kind, reason=reason, message=message)
