"""The compliance operator end to end: ``kopf run`` against a real kube-apiserver with
kube-controller-manager (Deployment, Job and garbage-collector controllers) and a real Redis.

No kubelet runs, so the one thing simulated is what a kubelet would write: the replay pod's
final status with the container's termination message (the operator's counts channel).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from k8s_helpers import (
    AUTOSCALERS,
    GROUP,
    REPLAYS,
    VERSION,
    eventually,
)
from kubernetes import client
from kubernetes.client.rest import ApiException
from operator_proc import running_operator, tail

from compliance.delivery.models import Envelope
from compliance.messaging import DELIVER_TASK
from compliance.settings import Settings
from compliance.wiring import Container
from compliance_operator.policy import DELETION_COST_ANNOTATION

pytestmark = pytest.mark.k8s

QUEUE = "compliance_webhooks"
TARGET = "worker-deliveries"
IMAGE = "registry.test/compliance:1.0"


@pytest.fixture
def ns(kcm_namespace: str) -> str:
    return kcm_namespace


@pytest.fixture
def services(settings: Settings) -> Iterator[Container]:
    built = Container(settings)
    yield built
    built.close()


@pytest.fixture
def operator(kcm_plane: ControlPlane, ns: str, tmp_path: Path) -> Iterator[None]:
    assert kcm_plane.kubeconfig is not None
    with running_operator(kcm_plane.kubeconfig, ns, tmp_path / "operator.log"):
        yield


def _secret(api: client.ApiClient, ns: str, name: str, data: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data))


def _deployment(api: client.ApiClient, ns: str, name: str, replicas: int) -> None:
    labels = {"app.kubernetes.io/name": "compliance-reporting", "app.kubernetes.io/component": name}
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "worker", "image": IMAGE}]}}}})


def _autoscaler(name: str = "wa", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scaleTargetRef": {"name": TARGET},
        "redis": {"secretRef": {"name": "compliance-redis"}},
        "queue": QUEUE, "minReplicas": 1, "maxReplicas": 10, "targetTasksPerReplica": 5,
        "pollingIntervalSeconds": 1,
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 10}},
    }
    base.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerAutoscaler", "metadata": {"name": name},
            "spec": base}


def _replay(name: str = "replay-1") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeadLetterReplay", "metadata": {"name": name},
            "spec": {"selector": {"errorType": "http_5xx", "limit": 50}, "ratePerSecond": 100,
                     "envFrom": [{"secretRef": {"name": "compliance-env"}}]}}


def _create_cr(api: client.ApiClient, ns: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, ns, plural, body, field_validation="Strict")


def _get_cr(api: client.ApiClient, ns: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, ns, plural, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _publish(services: Container, n: int) -> None:
    """n real delivery messages on compliance-compliance_webhooks, as the API enqueues them."""
    for _ in range(n):
        services.submitter.submit(Envelope(webhook_id=f"wh_{uuid.uuid4().hex}", url="https://hooks.example.com/in",
                                           event="report.ready", payload={"x": 1}))


def _replicas(api: client.ApiClient, ns: str, name: str = TARGET) -> int:
    return int(client.AppsV1Api(api).read_namespaced_deployment(name, ns).spec.replicas)


def _events(api: client.ApiClient, ns: str, name: str) -> list[client.CoreV1Event]:
    return [e for e in client.CoreV1Api(api).list_namespaced_event(ns).items if e.involved_object.name == name]


def _jobs(api: client.ApiClient, ns: str) -> list[client.V1Job]:
    return list(client.BatchV1Api(api).list_namespaced_job(ns).items)


def _finish_pod(api: client.ApiClient, ns: str, pod: client.V1Pod, summary: dict[str, Any], exit_code: int) -> None:
    """What the kubelet writes when the replay container exits after writing its summary."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    client.CoreV1Api(api).patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [{
            "name": "replay", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                     "message": json.dumps(summary), "startedAt": now, "finishedAt": now}}}]}})


def test_backlog_scales_the_worker_deployment(kcm_api, ns: str, redis_url: str, services: Container,
                                              operator: None) -> None:
    _secret(kcm_api, ns, "compliance-redis", {"COMPLIANCE_REDIS_URL": redis_url})
    _deployment(kcm_api, ns, TARGET, replicas=1)
    _create_cr(kcm_api, ns, AUTOSCALERS, _autoscaler())
    first = eventually(lambda: (_get_cr(kcm_api, ns, AUTOSCALERS, "wa") or {}).get("status", {}).get("lastPollTime"),
                       message="first poll")
    assert first
    assert _replicas(kcm_api, ns) == 1  # empty queue, min 1: nothing to do

    _publish(services, 23)  # ceil(23 / 5) = 5
    eventually(lambda: _replicas(kcm_api, ns) == 5, timeout=30, message="Deployment scaled to 5")
    scale = client.AppsV1Api(kcm_api).read_namespaced_deployment_scale(TARGET, ns)
    assert scale.spec.replicas == 5
    # The deployment controller follows: its ReplicaSet wants 5 pods too.
    eventually(lambda: [rs.spec.replicas for rs in client.AppsV1Api(kcm_api).list_namespaced_replica_set(ns).items]
               == [5], timeout=30, message="ReplicaSet at 5")

    status = eventually(lambda: (s := (_get_cr(kcm_api, ns, AUTOSCALERS, "wa") or {}).get("status", {}))
                        .get("desiredReplicas") == 5 and s, message="status desiredReplicas 5")
    assert status["queueLength"] == 23 and status["inFlight"] == 0
    assert status["currentReplicas"] == 5
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    events = eventually(lambda: [e for e in _events(kcm_api, ns, "wa") if e.reason == "ScaleUp"],
                        message="ScaleUp event")
    assert "1 -> 5" in events[0].message
    assert events[0].type == "Normal"


@pytest.mark.parametrize(("exit_code", "phase"), [(0, "Succeeded"), (2, "Failed")])
def test_replay_runs_exactly_one_job_and_reports_counts(kcm_api, ns: str, operator: None, exit_code: int,
                                                        phase: str, tmp_path: Path) -> None:
    """Exit 0 -> Succeeded; exit 2 (some entries failed) -> Failed, with the counts either way."""
    cr = _create_cr(kcm_api, ns, REPLAYS, _replay())
    (job,) = eventually(lambda: _jobs(kcm_api, ns), message="replay Job created")
    assert re.fullmatch(r"replay-1-replay-[0-9a-f]{8}", job.metadata.name)
    (owner,) = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("DeadLetterReplay", "replay-1",
                                                                      cr["metadata"]["uid"], True)
    # The server (not a mock) accepted the restricted pod template; the Job controller made a pod.
    pod = eventually(lambda: client.CoreV1Api(kcm_api).list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items, timeout=30,
        message="Job pod")[0]
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
    eventually(lambda: (_get_cr(kcm_api, ns, REPLAYS, "replay-1") or {}).get("status", {}).get("jobName")
               == job.metadata.name, message="status.jobName")

    failed = 0 if exit_code == 0 else 2
    _finish_pod(kcm_api, ns, pod, {"matched": 7, "replayed": 5 - failed + 1, "skipped": 1, "failed": failed,
                                   "dry_run": False}, exit_code)
    # The Job controller (not the test) finishes the Job; the operator copies phase and counts.
    job_condition = "Complete" if exit_code == 0 else "Failed"
    eventually(lambda: any(c.type == job_condition and c.status == "True" for c in client.BatchV1Api(
        kcm_api).read_namespaced_job(job.metadata.name, ns).status.conditions or []),
        timeout=30, message=f"Job {job_condition} (job controller)")
    status = eventually(lambda: (s := (_get_cr(kcm_api, ns, REPLAYS, "replay-1") or {}).get("status", {}))
                        .get("phase") == phase and s, timeout=30, message=f"replay {phase}")
    assert (status["matched"], status["replayed"], status["skipped"], status["failed"]) == (
        7, 6 - failed, 1, failed)
    assert status["completionTime"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["status"] == ("True" if exit_code == 0 else "False")
    eventually(lambda: [e for e in _events(kcm_api, ns, "replay-1") if e.reason == f"Replay{phase}"],
               message=f"Replay{phase} event")
    # Job events after the finish must not make a second Job. Cause one (an annotation on the Job)
    # and wait until the operator has handled it, rather than sleeping for events to come.
    log = tmp_path / "operator.log"
    handled = f"[{ns}/{job.metadata.name}] Handler 'replay_job' succeeded."
    before = log.read_text(errors="replace").count(handled)
    client.BatchV1Api(kcm_api).patch_namespaced_job(job.metadata.name, ns, {
        "metadata": {"annotations": {"test.compliance.io/poke": "after-finish"}}})
    eventually(lambda: log.read_text(errors="replace").count(handled) > before, timeout=30,
               message=f"the operator handled the Job event after the finish ({tail(log)})")
    assert [j.metadata.name for j in _jobs(kcm_api, ns)] == [job.metadata.name]


def test_deleting_the_resources_collects_only_what_they_own(kcm_api, ns: str, redis_url: str,
                                                            operator: None) -> None:
    _secret(kcm_api, ns, "compliance-redis", {"COMPLIANCE_REDIS_URL": redis_url})
    _deployment(kcm_api, ns, TARGET, replicas=2)
    _create_cr(kcm_api, ns, AUTOSCALERS, _autoscaler(minReplicas=2))
    _create_cr(kcm_api, ns, REPLAYS, _replay())
    (job,) = eventually(lambda: _jobs(kcm_api, ns), message="replay Job created")
    eventually(lambda: (_get_cr(kcm_api, ns, AUTOSCALERS, "wa") or {}).get("status", {}).get("lastPollTime"),
               message="autoscaler polled")
    # A canary owned by each resource: once the garbage collector has collected it, it has acted on
    # that resource's deletion (what follows waits on that, not on a sleep).
    owners: dict[str, str] = {}
    for plural, kind, name in ((REPLAYS, "DeadLetterReplay", "replay-1"), (AUTOSCALERS, "WorkerAutoscaler", "wa")):
        owners[name] = (_get_cr(kcm_api, ns, plural, name) or {})["metadata"]["uid"]
        client.CoreV1Api(kcm_api).create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"canary-{name}", "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": name, "uid": owners[name]}]}})
    custom = client.CustomObjectsApi(kcm_api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, REPLAYS, "replay-1")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, AUTOSCALERS, "wa")

    # The garbage collector removes the replay's Job (and its pod); the running operator releases
    # its finalizer so the WorkerAutoscaler goes away.
    def gone() -> bool:
        return (not _jobs(kcm_api, ns) and _get_cr(kcm_api, ns, REPLAYS, "replay-1") is None
                and _get_cr(kcm_api, ns, AUTOSCALERS, "wa") is None)

    eventually(gone, timeout=60, message="Job and both resources gone")
    eventually(lambda: not client.CoreV1Api(kcm_api).list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items, timeout=30,
        message="replay pod collected")
    eventually(lambda: not [c for c in client.CoreV1Api(kcm_api).list_namespaced_config_map(ns).items
                            if c.metadata.name.startswith("canary-")], timeout=60,
               message="the garbage collector acted on both deletions (canaries collected)")
    # What the resources only point at stays, untouched, and never was theirs to collect.
    assert _replicas(kcm_api, ns) == 2
    secret = client.CoreV1Api(kcm_api).read_namespaced_secret("compliance-redis", ns)
    assert secret.data
    deployment = client.AppsV1Api(kcm_api).read_namespaced_deployment(TARGET, ns)
    replica_sets = client.AppsV1Api(kcm_api).list_namespaced_replica_set(ns).items
    assert [rs.spec.replicas for rs in replica_sets] == [2]
    for obj in (secret, deployment, *replica_sets):
        assert not {ref.uid for ref in obj.metadata.owner_references or []} & set(owners.values()), obj.metadata


@pytest.fixture
def worker_as_pod(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Start a real delivery worker whose Celery hostname is a given pod's name (as in a pod)."""
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "worker.log"

    def start(pod: str) -> None:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "compliance.cli.main", "worker", "--kind", "deliveries", "-c", "2",
                 f"--hostname=deliveries@{pod}"],
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        procs.append(proc)
        eventually(lambda: proc.poll() is None and b"ready." in log_path.read_bytes(), timeout=60,
                   message=f"worker ready ({tail(log_path)})")

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_scale_down_keeps_the_busy_pod(kcm_api, ns: str, redis_url: str, r, services: Container,
                                       worker_as_pod, operator: None) -> None:
    """pod-deletion-cost really steers the ReplicaSet controller: the pod whose worker holds a
    task survives a scale-down from 4 to 1, although the controller would delete it first
    otherwise (same phase and readiness as the others, but more container restarts)."""
    labels = {"app.kubernetes.io/name": "compliance-reporting", "app.kubernetes.io/component": TARGET}
    _deployment(kcm_api, ns, TARGET, replicas=4)
    core = client.CoreV1Api(kcm_api)
    pods = eventually(lambda: (p := core.list_namespaced_pod(ns).items) and len(p) == 4 and p, timeout=30,
                      message="4 worker pods")
    busy = sorted(p.metadata.name for p in pods)[1]
    for pod in pods:  # what kubelets would report: all Running, none Ready; the busy one restarted
        restarts = 5 if pod.metadata.name == busy else 0
        core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
            "phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "worker", "image": IMAGE, "imageID": "", "ready": False,
                                   "restartCount": restarts, "state": {"running": {}}}]}})

    # A real delivery worker named deliveries@<busy pod> reserves a countdown delivery and holds it.
    worker_as_pod(busy)
    # A delivery signal due in 120 s: the worker reserves it and holds it (unacked, "scheduled").
    services.celery.send_task(DELIVER_TASK, args=[f"wh_{uuid.uuid4().hex}"], queue=QUEUE, countdown=120)
    eventually(lambda: r.hlen("compliance-unacked") == 1 and r.llen(f"compliance-{QUEUE}") == 0, timeout=30,
               message="worker reserved the countdown task")

    _secret(kcm_api, ns, "compliance-redis", {"COMPLIANCE_REDIS_URL": redis_url})
    _create_cr(kcm_api, ns, AUTOSCALERS, _autoscaler(behavior={
        "scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
        "scaleDown": {"stabilizationWindowSeconds": 0, "maxStep": 1}}))
    eventually(lambda: _replicas(kcm_api, ns) == 1, timeout=60, message="scaled down to 1")

    def survivors() -> list[str]:
        alive = [p for p in core.list_namespaced_pod(ns, label_selector=",".join(
            f"{k}={v}" for k, v in labels.items())).items if not p.metadata.deletion_timestamp]
        return [p.metadata.name for p in alive] if len(alive) == 1 else []

    assert eventually(survivors, timeout=30, message="one pod left") == [busy]
    annotations = core.read_namespaced_pod(busy, ns).metadata.annotations or {}
    assert annotations.get(DELETION_COST_ANNOTATION) == "1"


def test_hpa_on_the_same_deployment_stops_the_autoscaler(kcm_api, ns: str, redis_url: str, services: Container,
                                                         operator: None) -> None:
    """A real autoscaling/v2 HPA on the target: the operator reports HPAConflict and writes nothing."""
    _secret(kcm_api, ns, "compliance-redis", {"COMPLIANCE_REDIS_URL": redis_url})
    _deployment(kcm_api, ns, TARGET, replicas=1)
    client.AutoscalingV2Api(kcm_api).create_namespaced_horizontal_pod_autoscaler(ns, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "cpu"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": TARGET},
                 "minReplicas": 1, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]}})
    _publish(services, 23)
    _create_cr(kcm_api, ns, AUTOSCALERS, _autoscaler())
    status = eventually(lambda: (s := (_get_cr(kcm_api, ns, AUTOSCALERS, "wa") or {}).get("status", {}))
                        .get("conditions") and s, message="autoscaler status")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HPAConflict")
    assert "cpu" in ready["message"]
    # Two more polls (each writes lastPollTime, to the second; polls are 1 s apart), not a sleep.
    polls = {status["lastPollTime"]}

    def after_two_more_polls() -> dict[str, Any] | None:
        later = (_get_cr(kcm_api, ns, AUTOSCALERS, "wa") or {}).get("status", {})
        if later.get("lastPollTime"):
            polls.add(later["lastPollTime"])
        return later if len(polls) >= 3 else None

    later = eventually(after_two_more_polls, timeout=30, message="two more polls")
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HPAConflict")
    assert _replicas(kcm_api, ns) == 1
