"""charts/compliance-reporting on a real kube-apiserver with the real Helm 3 and Helm 4 binaries:
every scenario installs (the server accepts every object, RBAC included), upgrades keep generated
secrets, uninstall leaves the CRDs. No ``--wait``: no kubelet runs, so no pod ever starts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from k8s_helpers import (
    AUTOSCALERS,
    CHART_DIR,
    GROUP,
    SAMPLES_DIR,
    apply_crds,
    crd_established,
    monitoring_crds,
    new_client,
    raw,
    run,
    yaml_docs,
)
from kubernetes import client

pytestmark = pytest.mark.k8s

CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
SCENARIOS = ["default", *(p.name for p in CI_VALUES)]
HELMS = ("helm3", "helm4")

Helm = Callable[..., Any]


@pytest.fixture(scope="session")
def monitoring(k8s_api_client: client.ApiClient) -> list[str]:
    """The Prometheus operator's real monitoring.coreos.com CRDs, for the monitoring scenario."""
    return apply_crds(k8s_api_client, monitoring_crds())


@pytest.fixture
def helm(control_plane: ControlPlane, k8s_tools_dir: Path, tmp_path: Path) -> Helm:
    """Run ``helmN <args>`` against the control plane (admin kubeconfig, private Helm dirs)."""
    env = {"HELM_CACHE_HOME": str(tmp_path / "helm-cache"), "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
           "HELM_DATA_HOME": str(tmp_path / "helm-data"), "KUBECONFIG": str(control_plane.kubeconfig)}

    def call(version: str, *args: str, check: bool = True) -> Any:
        return run([str(k8s_tools_dir / version), *args, "--kubeconfig", str(control_plane.kubeconfig)],
                   env=env, timeout=180, check=check)

    return call


@pytest.fixture
def release() -> str:
    return f"cr{uuid.uuid4().hex[:6]}"


def _values_args(scenario: str) -> list[str]:
    return [] if scenario == "default" else ["-f", str(CHART_DIR / "ci" / scenario)]


def _manifest(helm: Helm, version: str, release: str, ns: str) -> list[dict[str, Any]]:
    return yaml_docs(helm(version, "get", "manifest", release, "-n", ns).stdout)


def _path(api: client.ApiClient, obj: dict[str, Any], ns: str) -> str:
    """REST path of an object, from discovery (works for built-in and custom kinds)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    status, body, _ = raw(api, "GET", base)
    assert status == 200, f"{api_version} not served: {body}"
    resource = next(r for r in body["resources"] if r["kind"] == kind and "/" not in r["name"])
    where = f"/namespaces/{obj['metadata'].get('namespace') or ns}" if resource["namespaced"] else ""
    return f"{base}{where}/{resource['name']}/{obj['metadata']['name']}"


def _assert_all_stored(api: client.ApiClient, objects: list[dict[str, Any]], ns: str) -> None:
    missing = []
    for obj in objects:
        status, _body, _ = raw(api, "GET", _path(api, obj, ns))
        if status != 200:
            missing.append((obj["kind"], obj["metadata"]["name"], status))
    assert missing == [], f"rendered but not stored: {missing}"


def _status(helm: Helm, version: str, release: str, ns: str) -> dict[str, Any]:
    return json.loads(helm(version, "status", release, "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("version", HELMS)
def test_install(helm: Helm, k8s_api_client, crds, k8s_namespace: str, monitoring, release: str,
                 version: str, scenario: str) -> None:
    """Every scenario in a fresh namespace of one cluster. The CRDs are cluster-wide and already
    there (one release per cluster owns them), so every other release says crds.install=false."""
    helm(version, "install", release, str(CHART_DIR), "-n", k8s_namespace, *_values_args(scenario),
         "--set", "crds.install=false")
    assert _status(helm, version, release, k8s_namespace)["info"]["status"] == "deployed"
    objects = _manifest(helm, version, release, k8s_namespace)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Secret", "ConfigMap"} <= kinds, kinds
    _assert_all_stored(k8s_api_client, objects, k8s_namespace)


def _release_secrets(api: client.ApiClient, objects: list[dict[str, Any]], ns: str) -> dict[str, dict[str, str]]:
    core = client.CoreV1Api(api)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    return {name: dict(core.read_namespaced_secret(name, ns).data or {}) for name in names}


def _scaled_workers(api: client.ApiClient, objects: list[dict[str, Any]], ns: str) -> list[str]:
    """The worker Deployments the chart leaves to an autoscaler (no spec.replicas rendered)."""
    return [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"
            and "replicas" not in o["spec"] and "worker" in o["metadata"]["name"]]


@pytest.mark.parametrize(("installer", "upgrader"), [("helm3", "helm3"), ("helm4", "helm4"), ("helm3", "helm4")])
def test_upgrade_keeps_generated_secrets_and_scaled_replicas(
        helm: Helm, k8s_api_client, crds, k8s_namespace: str, release: str, installer: str, upgrader: str) -> None:
    helm(installer, "install", release, str(CHART_DIR), "-n", k8s_namespace, "--set", "crds.install=false")
    objects = _manifest(helm, installer, release, k8s_namespace)
    before = _release_secrets(k8s_api_client, objects, k8s_namespace)
    assert before and all(before.values()), before.keys()
    # The operator owns the workers' replicas: write them as it does (deployments/scale, merge patch).
    workers = _scaled_workers(k8s_api_client, objects, k8s_namespace)
    assert workers, "with the autoscaler on, the chart must not render the workers' replicas"
    apps = client.AppsV1Api(k8s_api_client)
    for name in workers:
        apps.patch_namespaced_deployment_scale(name, k8s_namespace, {"spec": {"replicas": 4}})

    helm(upgrader, "upgrade", release, str(CHART_DIR), "-n", k8s_namespace, "--set", "crds.install=false")
    helm(upgrader, "upgrade", release, str(CHART_DIR), "-n", k8s_namespace, "--reuse-values")
    assert _status(helm, upgrader, release, k8s_namespace)["version"] == 3
    after = _release_secrets(k8s_api_client, _manifest(helm, upgrader, release, k8s_namespace), k8s_namespace)
    assert after == before, "helm upgrade regenerated a Secret"
    assert {name: apps.read_namespaced_deployment(name, k8s_namespace).spec.replicas for name in workers} == \
        dict.fromkeys(workers, 4), "helm upgrade reset the replicas the operator set"


@pytest.fixture
def fresh_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """An empty control plane of the same version: no CRDs, nothing owned by another release."""
    plane = ControlPlane(control_plane.binary_dir).start()
    try:
        yield plane
    finally:
        plane.stop()


CHART_CRDS = ("workerautoscalers.reporting.compliance.io", "deadletterreplays.reporting.compliance.io",
              "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")


@pytest.mark.parametrize("version", HELMS)
def test_chart_owns_the_crds_on_a_fresh_cluster(fresh_plane: ControlPlane, k8s_tools_dir: Path, tmp_path: Path,
                                                version: str) -> None:
    """Default values on an empty cluster: the chart installs the CRDs *and* the resources that
    need them in one release; uninstall keeps the CRDs and the users' resources; a reinstall
    under the same name adopts them; another release must say crds.install=false."""
    assert fresh_plane.kubeconfig is not None
    api = new_client(fresh_plane.kubeconfig)
    env = {"HELM_CACHE_HOME": str(tmp_path / "c"), "HELM_CONFIG_HOME": str(tmp_path / "f"),
           "HELM_DATA_HOME": str(tmp_path / "d")}

    def helm(*args: str, check: bool = True) -> Any:
        return run([str(k8s_tools_dir / version), *args, "--kubeconfig", str(fresh_plane.kubeconfig)],
                   env=env, timeout=180, check=check)

    core = client.CoreV1Api(api)
    for ns in ("one", "two"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        helm("install", "compliance", str(CHART_DIR), "-n", "one")
        objects = yaml_docs(helm("get", "manifest", "compliance", "-n", "one").stdout)
        assert {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"} == set(CHART_CRDS)
        _assert_all_stored(api, objects, "one")
        for name in CHART_CRDS:
            assert crd_established(api, name)
        sample = yaml_docs(SAMPLES_DIR / "workerautoscaler.yaml")[0]
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(GROUP, "v1alpha1", "one", AUTOSCALERS, sample)

        # A second release cannot take over CRDs another release owns: it must opt out.
        refused = helm("install", "compliance", str(CHART_DIR), "-n", "two", check=False)
        assert refused.returncode != 0 and "CustomResourceDefinition" in refused.stderr, refused.stderr
        helm("install", "compliance", str(CHART_DIR), "-n", "two", "--set", "crds.install=false")
        helm("uninstall", "compliance", "-n", "two")

        helm("uninstall", "compliance", "-n", "one")
        for name in CHART_CRDS:
            assert crd_established(api, name), f"{name} removed by helm uninstall"
        assert custom.get_namespaced_custom_object(GROUP, "v1alpha1", "one", AUTOSCALERS, sample["metadata"]["name"])
        kept = [o for o in objects if _keep(o)]
        assert {o["metadata"]["name"] for o in kept} >= set(CHART_CRDS)
        for obj in kept:  # CRDs, and data (the reports PVC) marked helm.sh/resource-policy: keep
            status, body, _ = raw(api, "GET", _path(api, obj, "one"))
            assert status == 200 and not body["metadata"].get("deletionTimestamp"), (obj["kind"], body)
        # Helm itself deletes everything else it made (nothing relies on a garbage collector).
        leftovers = [(o["kind"], o["metadata"]["name"]) for o in objects
                     if not _keep(o) and raw(api, "GET", _path(api, o, "one"))[0] != 404]
        assert leftovers == [], leftovers
        helm("install", "compliance", str(CHART_DIR), "-n", "one")
        assert _status_of(helm, "compliance", "one")["info"]["status"] == "deployed"
    finally:
        api.close()


def _status_of(helm: Callable[..., Any], release: str, ns: str) -> dict[str, Any]:
    return json.loads(helm("status", release, "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]


def _keep(obj: dict[str, Any]) -> bool:
    return (obj["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"


def _render(helm: Helm, ns: str, scenario: str) -> list[dict[str, Any]]:
    """``helm template`` output plus its hooks (helm test pods), as the server would get them."""
    out = helm("helm4", "template", "compliance", str(CHART_DIR), "-n", ns, *_values_args(scenario)).stdout
    return yaml_docs(out)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_passes_strict_server_validation(
        helm: Helm, k8s_api_client, crds, monitoring, k8s_namespace: str, scenario: str) -> None:
    """Helm 3 applies without field validation, so a misspelt field would be dropped silently
    (securityContext.readOnlyRootFileSystem, say). A strict server-side dry run of every object,
    hooks included, refuses unknown and duplicate fields instead. (Server-side apply, so objects
    that already exist, like the CRDs, are checked too.)"""
    refused = []
    for obj in _render(helm, k8s_namespace, scenario):
        status, body, warnings = raw(
            k8s_api_client, "PATCH", _path(k8s_api_client, obj, k8s_namespace), body=obj,
            content_type="application/apply-patch+yaml",
            query={"dryRun": "All", "fieldValidation": "Strict", "fieldManager": "strict-check", "force": "true"})
        if status not in (200, 201) or warnings:
            refused.append((obj["kind"], obj["metadata"]["name"], status,
                            body.get("message") if isinstance(body, dict) else body, warnings))
    assert refused == [], "\n".join(map(str, refused))
