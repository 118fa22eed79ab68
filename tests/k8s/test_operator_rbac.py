"""The operator's RBAC on a real kube-apiserver: every call the operator makes is allowed to its
ServiceAccount, things outside its role are forbidden, and the operator actually works end to end
when it authenticates as that ServiceAccount (a TokenRequest token, no admin anywhere)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from k8s_helpers import (
    AUTOSCALERS,
    CHART_DIR,
    GROUP,
    REPLAYS,
    can_i,
    eventually,
    new_client,
    serviceaccount_kubeconfig,
)
from kubernetes import client
from operator_proc import running_operator
from rbac_source import OperatorRbac, operator_rbac

pytestmark = pytest.mark.k8s

# (verb, group, resource, subresource): every request the operator makes in its namespace.
# operator/compliance_operator/k8s.py (one line per method) plus kopf's own watching/patching.
OPERATOR_CALLS: list[tuple[str, str, str, str]] = [
    # kopf: list + watch its resources, patch finalizers/annotations, status through /status
    *[(verb, GROUP, plural, "") for plural in (AUTOSCALERS, REPLAYS) for verb in ("list", "watch", "patch")],
    *[("patch", GROUP, plural, "status") for plural in (AUTOSCALERS, REPLAYS)],
    ("list", "batch", "jobs", ""), ("watch", "batch", "jobs", ""),   # @kopf.on.event(jobs)
    ("create", "", "events", ""),                                   # kopf.event / k8s.event
    ("get", "", "secrets", ""),                                     # Kube.secret_value
    ("get", "apps", "deployments", ""),                             # Kube.deployment
    ("patch", "apps", "deployments", "scale"),                      # Kube.scale_deployment
    ("list", "autoscaling", "horizontalpodautoscalers", ""),        # Kube.hpas_targeting
    ("list", "", "pods", ""),                                       # Kube.pods_of, termination_message
    ("patch", "", "pods", ""),                                      # Kube.set_deletion_cost
    ("get", GROUP, REPLAYS, ""),                                    # Kube.get_custom
    ("create", "batch", "jobs", ""), ("get", "batch", "jobs", ""),  # Kube.create_job, Kube.job
]
# Outside the role: reading all secrets, deleting things, making workloads, escalating.
FORBIDDEN: list[tuple[str, str, str, str]] = [
    ("list", "", "secrets", ""), ("delete", "", "secrets", ""), ("create", "", "secrets", ""),
    ("create", "apps", "deployments", ""), ("delete", "apps", "deployments", ""),
    ("create", "", "pods", ""), ("delete", "", "pods", ""), ("create", "", "pods", "exec"),
    ("delete", "batch", "jobs", ""),
    ("delete", GROUP, AUTOSCALERS, ""), ("create", GROUP, REPLAYS, ""),
    ("create", "rbac.authorization.k8s.io", "rolebindings", ""),
    ("escalate", "rbac.authorization.k8s.io", "roles", ""),
    ("delete", "", "namespaces", ""),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", ""),
]


# Chart values that change the operator's RBAC: default (namespaced Role) and cluster-wide.
MODES = {"namespaced": [], "cluster-wide": [CHART_DIR / "ci" / "hpa-values.yaml"]}


@pytest.fixture(params=list(MODES))
def rbac(request: pytest.FixtureRequest, kcm_api: client.ApiClient, kcm_namespace: str) -> Iterator[OperatorRbac]:
    """The operator's ServiceAccount, RBAC and peering object from the chart, in a fresh namespace."""
    values = MODES[request.param]
    if values and not values[0].exists():
        pytest.fail(f"{values[0]} is gone: pick another cluster-wide scenario")
    installed = operator_rbac(kcm_api, kcm_namespace, values)
    if values:
        assert installed.cluster_wide, f"{values[0].name} no longer makes a cluster-wide operator"
    yield installed
    installed.cleanup(kcm_api)


def operator_calls(rbac: OperatorRbac) -> list[tuple[str, str, str, str, str]]:
    """(verb, group, resource, subresource, namespace) of every request the operator makes."""
    ns = rbac.namespace
    calls = [(*call, ns) for call in OPERATOR_CALLS]
    watched = [(GROUP, AUTOSCALERS), (GROUP, REPLAYS), ("batch", "jobs")]
    if rbac.cluster_wide:  # kopf lists and watches across namespaces, and scans namespaces and CRDs
        calls += [(verb, group, plural, "", "") for group, plural in watched for verb in ("list", "watch")]
        calls += [(verb, "", "namespaces", "", "") for verb in ("list", "watch")]
        calls += [(verb, "apiextensions.k8s.io", "customresourcedefinitions", "", "") for verb in ("list", "watch")]
    if not rbac.standalone:  # peering: kopf reads, watches and patches its peering object
        scope = ("clusterkopfpeerings", "") if rbac.cluster_wide else ("kopfpeerings", ns)
        calls += [(verb, "kopf.dev", scope[0], "", scope[1]) for verb in ("get", "list", "watch", "patch")]
    return calls


@pytest.fixture
def as_operator(kcm_plane: ControlPlane, rbac: OperatorRbac) -> Iterator[client.ApiClient]:
    """Admin client impersonating the operator's ServiceAccount (and its groups)."""
    assert kcm_plane.kubeconfig is not None
    api = new_client(kcm_plane.kubeconfig, impersonate=rbac.user)
    # RBAC reads new bindings through an informer: wait until the first grant is visible.
    eventually(lambda: can_i(api, verb="list", group=GROUP, resource=AUTOSCALERS, namespace=rbac.namespace),
               timeout=15, message="operator RoleBinding visible to the authorizer")
    yield api
    api.close()


def test_every_operator_call_is_allowed(as_operator: client.ApiClient, rbac: OperatorRbac) -> None:
    denied = [call for call in operator_calls(rbac)
              if not can_i(as_operator, verb=call[0], group=call[1], resource=call[2], subresource=call[3],
                           namespace=call[4])]
    assert denied == [], f"{rbac.source}: the operator's ServiceAccount may not {denied}"


def test_nothing_outside_the_role_is_allowed(as_operator: client.ApiClient, rbac: OperatorRbac,
                                             kcm_api: client.ApiClient) -> None:
    allowed = [call for call in FORBIDDEN
               if can_i(as_operator, verb=call[0], group=call[1], resource=call[2], subresource=call[3],
                        namespace=rbac.namespace)]
    assert allowed == [], f"{rbac.source}: the operator's ServiceAccount may also {allowed}"
    if not rbac.cluster_wide:  # a namespaced operator sees nothing elsewhere
        other = f"other-{uuid.uuid4().hex[:6]}"
        assert not can_i(as_operator, verb="get", resource="secrets", namespace=other)
        assert not can_i(as_operator, verb="list", group=GROUP, resource=AUTOSCALERS, namespace=other)
    # ...and the authorizer is not just saying so: a real request is refused with 403.
    with pytest.raises(client.ApiException) as exc:
        client.CoreV1Api(as_operator).delete_namespaced_secret("anything", rbac.namespace)
    assert exc.value.status == 403


def _autoscaler(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "WorkerAutoscaler", "metadata": {"name": "wa"},
            "spec": {"scaleTargetRef": {"name": "worker-deliveries"},
                     "redis": {"secretRef": {"name": "compliance-redis"}}, "queue": "compliance_webhooks",
                     "minReplicas": 1, "maxReplicas": 10, "targetTasksPerReplica": 5,
                     "pollingIntervalSeconds": 1, **spec}}


def test_operator_works_as_its_serviceaccount(kcm_plane: ControlPlane, kcm_api: client.ApiClient,
                                              rbac: OperatorRbac, redis_url: str, r, tmp_path: Path,
                                              as_operator: client.ApiClient) -> None:
    """The real operator, authenticated as the ServiceAccount, scales, runs a replay Job, releases
    its finalizer; any RBAC gap shows as a 403 in its log and a missed expectation here."""
    ns = rbac.namespace
    assert kcm_plane.ca_file is not None
    kubeconfig = serviceaccount_kubeconfig(kcm_api, server=kcm_plane.url, ca_file=kcm_plane.ca_file,
                                           namespace=ns, name=rbac.service_account, path=tmp_path / "sa.kubeconfig")
    core, apps, batch = client.CoreV1Api(kcm_api), client.AppsV1Api(kcm_api), client.BatchV1Api(kcm_api)
    custom = client.CustomObjectsApi(kcm_api)
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="compliance-redis"),
                                                      string_data={"COMPLIANCE_REDIS_URL": redis_url}))
    labels = {"app": "worker-deliveries"}
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "worker-deliveries"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "worker", "image": "registry.test/compliance:1.0"}]}}}})
    for i in range(12):  # ceil(12 / 5) = 3; plain list entries count like kombu messages
        r.lpush("compliance-compliance_webhooks", f'{{"n": {i}}}')
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", ns, AUTOSCALERS, _autoscaler())
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", ns, REPLAYS, {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "DeadLetterReplay", "metadata": {"name": "replay-1"},
        "spec": {"dryRun": True}})

    log = tmp_path / "operator.log"
    with running_operator(kubeconfig, ns, log, settings=rbac.operator_settings, standalone=rbac.standalone,
                          cli_args=rbac.command):
        eventually(lambda: apps.read_namespaced_deployment("worker-deliveries", ns).spec.replicas == 3,
                   timeout=30, message="scaled to 3 as the ServiceAccount")
        (job,) = eventually(lambda: batch.list_namespaced_job(ns).items, timeout=30, message="replay Job")
        status = eventually(lambda: custom.get_namespaced_custom_object(
            GROUP, "v1alpha1", ns, REPLAYS, "replay-1").get("status", {}).get("jobName"), timeout=30,
            message="replay status written")
        assert status == job.metadata.name
        eventually(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "ScaleUp"],
                   message="ScaleUp event posted")
        custom.delete_namespaced_custom_object(GROUP, "v1alpha1", ns, AUTOSCALERS, "wa")
        eventually(lambda: not custom.list_namespaced_custom_object(GROUP, "v1alpha1", ns, AUTOSCALERS)["items"],
                   timeout=30, message="finalizer released, autoscaler gone")
    # RBAC refusals read 'User "system:serviceaccount:..." cannot <verb> resource ...'. (A cluster-wide
    # operator also meets other tests' terminating namespaces: 403 NamespaceTerminating is not RBAC.)
    denials = [line for line in log.read_text(errors="replace").splitlines()
               if re.search(r"cannot \S+ resource", line)]
    assert denials == [], "\n".join(denials[:5])
