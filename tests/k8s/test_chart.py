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
from k8s_helpers import CHART_DIR, CRD_DIR, apply_crds, crd_established, monitoring_crds, raw, run, yaml_docs
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.k8s

CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
SCENARIOS = ["default", *(p.name for p in CI_VALUES)]
HELMS = ("helm3", "helm4")

Helm = Callable[..., Any]


@pytest.fixture(scope="session")
def monitoring(k8s_api_client: client.ApiClient) -> list[str]:
    """Stand-in monitoring.coreos.com CRDs for the ServiceMonitor/PrometheusRule scenarios."""
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
def test_install(helm: Helm, k8s_api_client, k8s_namespace: str, monitoring, release: str,
                 version: str, scenario: str) -> None:
    helm(version, "install", release, str(CHART_DIR), "-n", k8s_namespace, *_values_args(scenario))
    assert _status(helm, version, release, k8s_namespace)["info"]["status"] == "deployed"
    objects = _manifest(helm, version, release, k8s_namespace)
    assert objects, "the release rendered no objects"
    _assert_all_stored(k8s_api_client, objects, k8s_namespace)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount"} <= kinds, kinds
    for name in ("workerautoscalers.reporting.compliance.io", "deadletterreplays.reporting.compliance.io"):
        assert crd_established(k8s_api_client, name)


def _release_secrets(api: client.ApiClient, objects: list[dict[str, Any]], ns: str) -> dict[str, dict[str, str]]:
    core = client.CoreV1Api(api)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    return {name: dict(core.read_namespaced_secret(name, ns).data or {}) for name in names}


@pytest.mark.parametrize(("installer", "upgrader"), [("helm3", "helm3"), ("helm4", "helm4"), ("helm3", "helm4")])
def test_upgrade_keeps_generated_secrets(helm: Helm, k8s_api_client, k8s_namespace: str, release: str,
                                         installer: str, upgrader: str) -> None:
    helm(installer, "install", release, str(CHART_DIR), "-n", k8s_namespace)
    before = _release_secrets(k8s_api_client, _manifest(helm, installer, release, k8s_namespace), k8s_namespace)
    assert before, "the chart makes no Secret"
    assert all(before.values()), before.keys()
    helm(upgrader, "upgrade", release, str(CHART_DIR), "-n", k8s_namespace)
    helm(upgrader, "upgrade", release, str(CHART_DIR), "-n", k8s_namespace, "--reuse-values")
    assert _status(helm, upgrader, release, k8s_namespace)["version"] == 3
    after = _release_secrets(k8s_api_client, _manifest(helm, upgrader, release, k8s_namespace), k8s_namespace)
    assert after == before


@pytest.mark.parametrize("version", HELMS)
def test_uninstall_keeps_the_crds(helm: Helm, k8s_api_client, k8s_namespace: str, release: str,
                                  version: str) -> None:
    helm(version, "install", release, str(CHART_DIR), "-n", k8s_namespace)
    objects = _manifest(helm, version, release, k8s_namespace)
    custom = client.CustomObjectsApi(k8s_api_client)
    sample = yaml_docs(CRD_DIR.parent / "samples" / "workerautoscaler.yaml")[0]
    custom.create_namespaced_custom_object("reporting.compliance.io", "v1alpha1", k8s_namespace,
                                           "workerautoscalers", sample)
    helm(version, "uninstall", release, "-n", k8s_namespace)
    for name in ("workerautoscalers.reporting.compliance.io", "deadletterreplays.reporting.compliance.io"):
        assert crd_established(k8s_api_client, name), f"{name} removed by helm uninstall"
    # The users' resources survive with their CRD; the release's own objects are gone.
    assert custom.get_namespaced_custom_object("reporting.compliance.io", "v1alpha1", k8s_namespace,
                                               "workerautoscalers", sample["metadata"]["name"])
    leftovers = []
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        status, _, _ = raw(k8s_api_client, "GET", _path(k8s_api_client, obj, k8s_namespace))
        if status != 404:
            leftovers.append((obj["kind"], obj["metadata"]["name"]))
    assert leftovers == [] or all(_kept(o, objects) for o in leftovers), leftovers


def _kept(kind_name: tuple[str, str], objects: list[dict[str, Any]]) -> bool:
    """Objects the chart marks ``helm.sh/resource-policy: keep`` may stay."""
    for obj in objects:
        if (obj["kind"], obj["metadata"]["name"]) == kind_name:
            return bool((obj["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep")
    return False


@pytest.fixture
def no_chart_crds(k8s_api_client) -> Iterator[None]:
    yield
    try:
        client.ApiextensionsV1Api(k8s_api_client).read_custom_resource_definition(
            "workerautoscalers.reporting.compliance.io")
    except ApiException as exc:
        if exc.status == 404:
            pytest.fail("the CRDs are gone")
        raise
