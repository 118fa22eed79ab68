"""Fixtures for tests that need a real kube-apiserver (tests/k8s, marker ``k8s``).

* ``control_plane`` (session): etcd + kube-apiserver (RBAC on) built from Go modules by
  scripts/envtest-binaries.sh and started on loopback. Skipped ONLY when
  COMPLIANCE_SKIP_K8S=1; a failed build or start is an error, never a silent skip.
* ``k8s_api_client`` (session): kubernetes.client.ApiClient for the admin identity.
* ``k8s_namespace`` (function): a fresh namespace, deleted afterwards.

Env: ENVTEST_K8S_VERSIONS (comma-separated; default ``v1.34.4,v1.35.4``: the whole tier runs
once per version, ``control_plane`` is parametrized by it), ENVTEST_K8S_VERSION (one version
only, when ENVTEST_K8S_VERSIONS is unset), COMPLIANCE_K8S_CONTROLLER_MANAGER=1 (also run
kube-controller-manager), COMPLIANCE_K8S_KEEP=1 (keep logs/data dir), COMPLIANCE_SKIP_K8S=1.

The (possibly slow, cold ~minutes) binary build runs in ``pytest_collection_finish``, i.e.
once per session and outside any per-test timeout, and only when a selected test uses
the ``k8s`` marker. CI should still pre-build with ``scripts/envtest-binaries.sh``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane, ControlPlaneError, build_binaries

_BIN_KEY = pytest.StashKey[dict[str, Path]]()
_ERR_KEY = pytest.StashKey[str]()
# Two minors by default; the CI budget allows both (cold build ~5 min each, cached after).
DEFAULT_VERSIONS = ("v1.34.4", "v1.35.4")


def k8s_versions() -> list[str]:
    """Kubernetes versions the tier runs against (each gets its own control plane)."""
    many = os.environ.get("ENVTEST_K8S_VERSIONS", "").strip()
    if many:
        return [v.strip() for v in many.split(",") if v.strip()]
    one = os.environ.get("ENVTEST_K8S_VERSION", "").strip()
    return [one] if one else list(DEFAULT_VERSIONS)


def _skip_k8s() -> bool:
    return os.environ.get("COMPLIANCE_SKIP_K8S") == "1"


@pytest.hookimpl(tryfirst=True)  # before `-m "not k8s"` deselection runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.k8s)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _skip_k8s() or session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("k8s") for item in session.items):
        return
    built: dict[str, Path] = {}
    try:
        for version in k8s_versions():
            built[version] = build_binaries(version)
    except ControlPlaneError as e:
        session.config.stash[_ERR_KEY] = str(e)
    session.config.stash[_BIN_KEY] = built


@pytest.fixture(scope="session", params=k8s_versions())
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    if _skip_k8s():
        pytest.skip("COMPLIANCE_SKIP_K8S=1: real kube-apiserver tests disabled")
    stash = request.config.stash
    if _ERR_KEY in stash:
        pytest.fail(f"envtest binaries could not be built:\n{stash[_ERR_KEY]}", pytrace=False)
    version: str = request.param
    bins = stash.get(_BIN_KEY, {}).get(version) or build_binaries(version)
    cp = ControlPlane(
        bins,
        # Off by default: without it there are no controllers (no "default" SA, no
        # Pods from Deployments, namespaces stay Terminating) but startup is ~2x faster.
        with_controller_manager=os.environ.get("COMPLIANCE_K8S_CONTROLLER_MANAGER") == "1",
        keep_dir=os.environ.get("COMPLIANCE_K8S_KEEP") == "1",
    )
    try:
        cp.start()
    except ControlPlaneError as e:
        pytest.fail(f"control plane did not start:\n{e}", pytrace=False)
    print(f"\ncontrol plane {cp.url} up in {cp.startup_seconds:.2f}s ({bins})")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def k8s_api_client(control_plane: ControlPlane):  # type: ignore[no-untyped-def]
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def k8s_namespace(k8s_api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(k8s_api_client)
    name = f"test-{uuid.uuid4().hex[:10]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"compliance-reporting/test": "true"})
        )
    )
    try:
        yield name
    finally:
        try:
            # Without kube-controller-manager the namespace stays Terminating; harmless
            # for a throwaway control plane, and names are unique.
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture(scope="session")
def crds(k8s_api_client) -> list[str]:  # type: ignore[no-untyped-def]
    """manifests/crds installed in the control plane and Established (names)."""
    from k8s_helpers import CRD_DIR, apply_crds, yaml_docs

    docs = [doc for path in sorted(CRD_DIR.glob("*.yaml")) for doc in yaml_docs(path)]
    return apply_crds(k8s_api_client, docs)


@pytest.fixture(scope="session")
def k8s_tools_dir() -> Path:
    """Directory with kubectl, helm3 and helm4 (scripts/k8s-tools.sh)."""
    if _skip_k8s():
        pytest.skip("COMPLIANCE_SKIP_K8S=1: real kube-apiserver tests disabled")
    from k8s_helpers import k8s_tools

    return k8s_tools()


@pytest.fixture(scope="session")
def kcm_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A control plane with kube-controller-manager (Deployment, Job, garbage-collector controllers),
    same version as ``control_plane``; that one itself when it already runs the controllers."""
    if control_plane.with_controller_manager:
        yield control_plane
        return
    plane = ControlPlane(control_plane.binary_dir, with_controller_manager=True)
    try:
        plane.start()
    except ControlPlaneError as e:
        pytest.fail(f"control plane with controller-manager did not start:\n{e}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kcm_api(kcm_plane: ControlPlane):  # type: ignore[no-untyped-def]
    """Admin client of ``kcm_plane``, with manifests/crds installed."""
    from k8s_helpers import CRD_DIR, apply_crds, new_client, yaml_docs

    assert kcm_plane.kubeconfig is not None
    api = new_client(kcm_plane.kubeconfig)
    apply_crds(api, [d for p in sorted(CRD_DIR.glob("*.yaml")) for d in yaml_docs(p)])
    yield api
    api.close()


@pytest.fixture
def kcm_namespace(kcm_api) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace in ``kcm_plane`` (really deleted afterwards: the namespace controller runs)."""
    from kubernetes import client

    core = client.CoreV1Api(kcm_api)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
