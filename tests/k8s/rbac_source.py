"""The operator's ServiceAccount, RBAC and peering object as the Helm chart renders them
(``helm template``: the ServiceAccount, the bindings naming it, their roles), installed into a
namespace of the control plane, plus how the chart runs the operator (args, settings)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k8s_helpers import CHART_DIR, k8s_tools, yaml_docs
from kubernetes import client
from kubernetes.client.rest import ApiException

CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")
PEERING_KINDS = ("KopfPeering", "ClusterKopfPeering")

@dataclass
class OperatorRbac:
    """The operator identity installed in one namespace."""

    source: str
    namespace: str
    service_account: str
    cluster_wide: bool
    operator_settings: dict[str, str]
    standalone: bool = True
    objects: list[dict[str, Any]] = field(default_factory=list)
    command: list[str] | None = None  # the container's args (run with the `compliance` CLI), or kopf run

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def cleanup(self, api: client.ApiClient) -> None:
        """Remove the cluster-scoped objects (the namespaced ones go with the namespace)."""
        rbac = client.RbacAuthorizationV1Api(api)
        for obj in self.objects:
            try:
                if obj["kind"] == "ClusterRole":
                    rbac.delete_cluster_role(obj["metadata"]["name"])
                elif obj["kind"] == "ClusterRoleBinding":
                    rbac.delete_cluster_role_binding(obj["metadata"]["name"])
                elif obj["kind"] == "ClusterKopfPeering":
                    client.CustomObjectsApi(api).delete_cluster_custom_object(
                        "kopf.dev", "v1", "clusterkopfpeerings", obj["metadata"]["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise


def operator_rbac(api: client.ApiClient, namespace: str, values: list[Path] | None = None) -> OperatorRbac:
    """Install the operator's ServiceAccount + RBAC (+ peering object) from the chart into ``namespace``."""
    installed = _from_chart(namespace, values)
    for obj in installed.objects:
        create(api, obj, namespace)
    return installed


def _from_chart(namespace: str, values: list[Path] | None = None) -> OperatorRbac:
    helm = k8s_tools() / "helm4"
    release = f"rbac-{namespace[-6:]}"
    cmd = [str(helm), "template", release, str(CHART_DIR), "--namespace", namespace]
    for path in values or []:
        cmd += ["-f", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = yaml_docs(proc.stdout)
    deployment = _operator_deployment(docs)
    pod = deployment["spec"]["template"]["spec"]
    sa = pod.get("serviceAccountName") or "default"
    container = pod["containers"][0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "value" in e}
    settings = {k.removeprefix("COMPLIANCE_OPERATOR_"): v for k, v in env.items()
                if k.startswith("COMPLIANCE_OPERATOR_") and k != "COMPLIANCE_OPERATOR_LIVENESS_ENDPOINT"}
    args = [*(container.get("command") or []), *(container.get("args") or [])]
    cluster_wide = "--all-namespaces" in args or "-A" in args or (not settings.get("NAMESPACES") and "--namespace" not in args)
    standalone = "--standalone" in args or settings.get("STANDALONE", "").lower() == "true"
    peering = [d for d in docs if d.get("kind") in PEERING_KINDS]
    return OperatorRbac(source=f"chart {[p.name for p in values or []] or 'defaults'}", namespace=namespace,
                        service_account=sa, cluster_wide=cluster_wide, operator_settings=settings,
                        standalone=standalone, objects=_bound_to(docs, sa, namespace) + peering, command=args)


def _operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    for doc in docs:
        labels = (doc.get("metadata") or {}).get("labels") or {}
        if doc.get("kind") == "Deployment" and labels.get("app.kubernetes.io/component") == "operator":
            return doc
    raise AssertionError("no operator Deployment (app.kubernetes.io/component: operator) in the rendered chart")


def _bound_to(docs: list[dict[str, Any]], sa: str, namespace: str) -> list[dict[str, Any]]:
    """The ServiceAccount, the bindings naming it and the roles those bindings reference."""
    out = [d for d in docs if d.get("kind") == "ServiceAccount" and d["metadata"]["name"] == sa]
    bindings = [d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding") and any(
        s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace", namespace) == namespace
        for s in d.get("subjects") or [])]
    refs = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings}
    roles = [d for d in docs if (d.get("kind"), (d.get("metadata") or {}).get("name")) in refs]
    return out + roles + bindings


def create(api: client.ApiClient, obj: dict[str, Any], namespace: str) -> None:
    """Create one RBAC or peering object (namespaced ones in ``namespace``)."""
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    kind = obj["kind"]
    if kind not in CLUSTER_KINDS:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    call = {
        "ServiceAccount": lambda: core.create_namespaced_service_account(namespace, obj, field_validation="Strict"),
        "Role": lambda: rbac.create_namespaced_role(namespace, obj, field_validation="Strict"),
        "RoleBinding": lambda: rbac.create_namespaced_role_binding(namespace, obj, field_validation="Strict"),
        "ClusterRole": lambda: rbac.create_cluster_role(obj, field_validation="Strict"),
        "ClusterRoleBinding": lambda: rbac.create_cluster_role_binding(obj, field_validation="Strict"),
        "KopfPeering": lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", obj),
        "ClusterKopfPeering": lambda: client.CustomObjectsApi(api).create_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", obj),
    }[kind]
    call()
