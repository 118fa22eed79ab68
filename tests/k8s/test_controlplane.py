"""Smoke test for the envtest-style control plane (real etcd + kube-apiserver, RBAC on)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.k8s


def test_readyz_and_version(control_plane, k8s_api_client) -> None:
    info = client.VersionApi(k8s_api_client).get_code()
    assert info.major == "1"
    assert control_plane.kubeconfig is not None and control_plane.kubeconfig.exists()


def test_configmap_roundtrip(k8s_api_client, k8s_namespace: str) -> None:
    core = client.CoreV1Api(k8s_api_client)
    core.create_namespaced_config_map(
        k8s_namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings"), data={"retention": "30d"}
        ),
    )
    got = core.read_namespaced_config_map("settings", k8s_namespace)
    assert got.data == {"retention": "30d"}
    assert got.metadata.namespace == k8s_namespace


def test_rbac_forbids_unprivileged_serviceaccount(
    control_plane, k8s_api_client, k8s_namespace
) -> None:
    core = client.CoreV1Api(k8s_api_client)
    core.create_namespaced_service_account(
        k8s_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    core.create_namespaced_secret(
        k8s_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="top-secret"), string_data={"k": "v"}),
    )
    # Admin (system:masters) may impersonate; the impersonated SA has no RoleBinding.
    sa_user = f"system:serviceaccount:{k8s_namespace}:nobody"
    from kubernetes import config

    impersonating = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    impersonating.set_default_header("Impersonate-User", sa_user)
    try:
        with pytest.raises(ApiException) as exc:
            client.CoreV1Api(impersonating).list_namespaced_secret(k8s_namespace)
        assert exc.value.status == 403, exc.value.body
        assert "forbidden" in exc.value.body.lower()

        # ...and grant it: a Role + RoleBinding makes the same call succeed (RBAC, not a fluke).
        rbac = client.RbacAuthorizationV1Api(k8s_api_client)
        rbac.create_namespaced_role(
            k8s_namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="secret-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            k8s_namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="nobody-reads-secrets"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="secret-reader"
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="ServiceAccount", name="nobody", namespace=k8s_namespace
                    )
                ],
            ),
        )
        # The RBAC authorizer reads bindings through an informer: allow it to catch up.
        deadline = time.monotonic() + 10
        while True:
            try:
                items = client.CoreV1Api(impersonating).list_namespaced_secret(k8s_namespace).items
                break
            except ApiException as e:
                if e.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert "top-secret" in [s.metadata.name for s in items]
    finally:
        impersonating.close()
