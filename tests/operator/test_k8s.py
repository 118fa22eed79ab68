"""compliance_operator.k8s against kmock: API errors come back as NotFound and Conflict."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from compliance_operator import k8s
from tests.operator.conftest import NS, Api


def job(name: str, owner_uid: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": [
                {"apiVersion": "reporting.compliance.io/v1alpha1", "kind": "DeadLetterReplay",
                 "name": "r", "uid": owner_uid, "controller": True}]},
            "spec": {"template": {"spec": {"containers": []}}}}


@pytest.mark.asyncio
async def test_missing_objects_are_not_found(api: Api) -> None:
    kube = k8s.Kube.from_environment(timeout=5)
    try:
        with pytest.raises(k8s.NotFound) as caught:
            await asyncio.to_thread(kube.deployment, NS, "absent")
        assert caught.value.status == 404 and isinstance(caught.value, k8s.ApiError)
        assert await asyncio.to_thread(kube.job, NS, "absent") is None
        assert await asyncio.to_thread(kube.get_custom, "workerautoscalers", NS, "absent") is None
        with pytest.raises(k8s.NotFound):
            await asyncio.to_thread(kube.secret_value, NS, "absent", "KEY")
    finally:
        kube.close()


@pytest.mark.asyncio
async def test_an_existing_job_is_ours_or_a_conflict(api: Api) -> None:
    kube = k8s.Kube.from_environment(timeout=5)
    try:
        first, created = await asyncio.to_thread(kube.create_job, job("j", "u-1"))
        assert created and first["metadata"]["name"] == "j"
        again, created = await asyncio.to_thread(kube.create_job, job("j", "u-1"))
        assert not created and again["metadata"]["name"] == "j"
        with pytest.raises(k8s.Conflict, match="not owned by this replay") as caught:
            await asyncio.to_thread(kube.create_job, job("j", "u-other"))
        assert caught.value.status == 409
    finally:
        kube.close()


def test_statuses_map_to_types() -> None:
    assert type(k8s.api_error(404, "x")) is k8s.NotFound
    assert type(k8s.api_error(409, "x")) is k8s.Conflict
    other = k8s.api_error(403, "forbidden")
    assert type(other) is k8s.ApiError and other.status == 403
