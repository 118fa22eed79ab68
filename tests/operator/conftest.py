"""Fixtures for operator tests: a kmock Kubernetes API and the operator under KopfRunner.

kmock runs in the test's event loop, so tests are async and never block it: the operator runs in
KopfRunner's thread and is entered/exited through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
from kopf.testing import KopfRunner

NS = "ns1"
GROUP_VERSION = "reporting.compliance.io/v1alpha1"

RESOURCES: dict[str, tuple[str, set[str]]] = {
    f"{GROUP_VERSION}/workerautoscalers": ("WorkerAutoscaler", {"status"}),
    f"{GROUP_VERSION}/deadletterreplays": ("DeadLetterReplay", {"status"}),
    "apps/v1/deployments": ("Deployment", {"scale", "status"}),
    "batch/v1/jobs": ("Job", {"status"}),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", {"status"}),
    "v1/pods": ("Pod", {"status"}),
    "v1/secrets": ("Secret", set()),
    "v1/events": ("Event", set()),
    "v1/namespaces": ("Namespace", set()),  # discovery only: kmock cannot serve its listing
}
PATHS = {
    "apps/v1/deployments": "/apis/apps/v1/namespaces/{ns}/deployments",
    "batch/v1/jobs": "/apis/batch/v1/namespaces/{ns}/jobs",
    "autoscaling/v2/horizontalpodautoscalers": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "v1/pods": "/api/v1/namespaces/{ns}/pods",
    "v1/secrets": "/api/v1/namespaces/{ns}/secrets",
    "v1/events": "/api/v1/namespaces/{ns}/events",
    "workerautoscalers": f"/apis/{GROUP_VERSION}/namespaces/{{ns}}/workerautoscalers",
    "deadletterreplays": f"/apis/{GROUP_VERSION}/namespaces/{{ns}}/deadletterreplays",
}
_rv = iter(range(1, 1_000_000))


class Api:
    """The test's own client of kmock: every change goes through HTTP, so watchers see it."""

    def __init__(self, url: str, session: aiohttp.ClientSession, mock: kmock.KubernetesEmulator) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.mock = mock

    def events(self, reason: str) -> list[dict[str, Any]]:
        """Events the operator posted (read from kmock's request log: kmock ignores
        generateName, so every Event after the first answers 409 and is not stored)."""
        return [dict(req.data) for req in list(self.mock)
                if str(req.method).upper().endswith("POST") and req.url.path.endswith("/events")
                and isinstance(req.data, dict) and req.data.get("reason") == reason]

    def _path(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        path = self.url + PATHS[kind].format(ns=NS)
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    async def create(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta.setdefault("uid", f"uid-{meta['name']}-{time.monotonic_ns()}")
        meta.setdefault("resourceVersion", str(next(_rv)))  # kmock assigns none
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        async with self.session.post(self._path(kind), json=obj) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]

    async def patch(self, kind: str, name: str, patch: dict[str, Any], sub: str | None = None) -> None:
        patch.setdefault("metadata", {})["resourceVersion"] = str(next(_rv))
        async with self.session.patch(self._path(kind, name, sub), json=patch,
                                      headers={"Content-Type": "application/merge-patch+json"}) as resp:
            assert resp.status < 300, await resp.text()

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        async with self.session.get(self._path(kind, name)) as resp:
            if resp.status == 404:
                return None
            assert resp.status < 300, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]

    async def list(self, kind: str) -> list[dict[str, Any]]:
        async with self.session.get(self._path(kind)) as resp:
            if resp.status == 404:
                return []
            assert resp.status < 300, await resp.text()
            return list((await resp.json()).get("items") or [])

    async def secret(self, name: str, data: dict[str, str]) -> None:
        await self.create("v1/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                         "data": {k: base64.b64encode(v.encode()).decode()
                                                  for k, v in data.items()}})

    async def deployment(self, name: str, replicas: int) -> None:
        await self.create("apps/v1/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}})

    async def replicas(self, name: str) -> int:
        dep = await self.get("apps/v1/deployments", name)
        assert dep is not None
        return int(dep["spec"]["replicas"])


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0,
                     message: str = "") -> Any:
    """Await ``check`` until it returns something truthy (the event loop keeps serving kmock)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(message or f"not reached within {timeout}s (last: {last!r})")


@pytest_asyncio.fixture
async def api(kmock: kmock.KubernetesEmulator, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """kmock with our resources declared and KUBECONFIG pointing at it."""
    for key, (kind, subs) in RESOURCES.items():
        kmock.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=key != "v1/namespaces", subresources=subs,
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    url = str(kmock.url).rstrip("/")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: kmock, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: kmock, user: {token: test-token}}]\n"
        f"contexts: [{{name: kmock, context: {{cluster: kmock, user: kmock, namespace: {NS}}}}}]\n"
        "current-context: kmock\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # The kubernetes client reads KUBECONFIG once at import.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    async with aiohttp.ClientSession() as session:
        yield Api(url, session, kmock)


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set COMPLIANCE_OPERATOR_* for the operator run (after conftest cleared ambient ones)."""
    def _set(**values: str) -> None:
        base = {"STANDALONE": "true", "SCANNING_DISABLED": "true", "LIVENESS_ENDPOINT": "", "INSPECT_TIMEOUT_SECONDS": "0.3",
                "BREAKER_RESET_TIMEOUT": "60", "REPLAY_IMAGE": "registry.test/compliance:1.0",
                "REPLAY_ENV_FROM_SECRETS": "compliance-env"}
        for key, value in {**base, **values}.items():
            monkeypatch.setenv(f"COMPLIANCE_OPERATOR_{key}", value)
    return _set


@asynccontextmanager
async def running_operator() -> AsyncIterator[KopfRunner]:
    """``kopf run -m compliance_operator.main`` in a thread, namespaced, standalone."""
    runner = KopfRunner(["run", "--verbose", "--standalone", "--namespace", NS, "-m", "compliance_operator.main"],
                        timeout=30)
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
