"""DeadLetterReplay: exactly one owned, restricted Job; Job completion flows into the CR status;
the Job's command, run for real against Redis, moves dead letters back to delivery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from compliance.settings import Settings
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import Attempt, DeadLetter
from compliance.store.statuses import StatusStore
from compliance_operator.jobs import build_job
from compliance_operator.settings import OperatorSettings
from tests.operator.conftest import Api, eventually, running_operator

SPEC: dict[str, Any] = {
    "selector": {"errorType": "http_5xx", "olderThan": "1s", "newerThan": "7d", "limit": 50},
    "ratePerSecond": 100, "dryRun": False, "ttlSecondsAfterFinished": 600,
    "envFrom": [{"secretRef": {"name": "compliance-env"}}],
}


def replay_cr(name: str = "replay-1") -> dict[str, Any]:
    return {"apiVersion": "reporting.compliance.io/v1alpha1", "kind": "DeadLetterReplay",
            "metadata": {"name": name}, "spec": json.loads(json.dumps(SPEC))}


async def jobs_of(api: Api) -> list[dict[str, Any]]:
    return await api.list("batch/v1/jobs")


@pytest.mark.asyncio
async def test_replay_creates_exactly_one_job_and_reports_counts(
        api: Api, operator_env: Callable[..., None]) -> None:
    operator_env()
    cr = await api.create("deadletterreplays", replay_cr())
    async with running_operator():
        (job,) = await eventually(lambda: jobs_of(api), message="no Job created")
        await eventually(lambda: _phase(api, "Pending"))
    # kmock assigns no resourceVersions, so kopf cannot recognise its own status write and may run
    # the create handler twice; the deterministic name + 409 keeps that to one Job, as it must.
    attempts = _job_creations(api)
    # a restarted operator (resume) tries again, gets 409 and still has exactly one Job
    async with running_operator() as runner:
        await eventually(lambda: _more(api, attempts))
        assert len(await jobs_of(api)) == 1

        name = job["metadata"]["name"]
        assert job["metadata"]["ownerReferences"] == [{
            "apiVersion": "reporting.compliance.io/v1alpha1", "kind": "DeadLetterReplay",
            "name": "replay-1", "uid": cr["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == [
            "compliance", "dlq", "replay", "--error-type", "http_5xx", "--older-than", "1s",
            "--newer-than", "7d", "--limit", "50", "--rate", "100",
            "--termination-log", "/dev/termination-log",
            "--actor", f"system:operator:DeadLetterReplay/{cr['metadata']['namespace']}/replay-1"]
        assert container["image"] == "registry.test/compliance:1.0"
        assert container["envFrom"] == [{"secretRef": {"name": "compliance-env"}}]
        sc = container["securityContext"]
        assert (sc["runAsNonRoot"], sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"]) == (
            True, True, False)
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 600

        # the Job runs ...
        await api.patch("batch/v1/jobs", name, {"status": {"active": 1}}, sub="status")
        await eventually(lambda: _phase(api, "Running"))
        # ... its pod ends with the summary as termination message, and the Job completes
        await api.create("v1/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-abcde", "labels": {"batch.kubernetes.io/job-name": name}},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "replay", "state": {
                "terminated": {"exitCode": 0, "message": json.dumps(
                    {"dry_run": False, "failed": 0, "matched": 7, "replayed": 6, "skipped": 1})}}}]}})
        await api.patch("batch/v1/jobs", name, {"status": {"active": 0, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}}, sub="status")
        status = await eventually(lambda: _phase(api, "Succeeded"))
    assert "failed with an exception" not in runner.output, runner.output[-3000:]
    assert (status["matched"], status["replayed"], status["skipped"], status["failed"]) == (7, 6, 1, 0)
    assert status["jobName"] == name and status["completionTime"]
    assert api.events("JobCreated") and api.events("ReplaySucceeded")
    assert len(await jobs_of(api)) == 1


async def _phase(api: Api, phase: str) -> dict[str, Any] | None:
    obj = await api.get("deadletterreplays", "replay-1")
    status = (obj or {}).get("status") or {}
    return status if status.get("phase") == phase else None


def _job_creations(api: Api) -> int:
    return sum(1 for req in list(api.mock)
               if str(req.method).upper().endswith("POST") and req.url.path.endswith("/jobs"))


async def _more(api: Api, attempts: int) -> bool:
    # the restarted operator's resume handler tried to create the Job again (and got 409)
    return _job_creations(api) > attempts


def test_replay_job_command_moves_dead_letters_back_to_delivery(
        env: dict[str, str], settings: Settings, r: redis.Redis, tmp_path: Path) -> None:
    """Run exactly the Job's command (with the Job's env) against the test Redis."""
    store = DeadLetterStore(r, settings)
    now = time.time()
    for i, error_type in enumerate(["http_5xx", "http_5xx", "timeout"]):
        store.put(DeadLetter(
            webhook_id=f"wh_{i}", destination="https://hooks.example.com/in", event="report.ready",
            payload={"n": i}, attempts=[Attempt(at=now - 60, status_code=503, error_type=error_type)],
            error_type=error_type, error="503 from receiver", created_at=now - 120, failed_at=now - 60))
    body = {**replay_cr(), "metadata": {"name": "replay-1", "namespace": "ns1", "uid": "u-1"}}
    (container,) = build_job(body=body, settings=OperatorSettings())["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["compliance", "dlq", "replay"]
    log = tmp_path / "termination-log"
    argv = [sys.executable, "-m", "compliance.cli.main", *command[1:]]
    argv[argv.index("/dev/termination-log")] = str(log)
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(log.read_text())
    assert (summary["matched"], summary["replayed"], summary["failed"]) == (2, 2, 0)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == summary
    statuses = StatusStore(r, settings)
    for webhook_id in ("wh_0", "wh_1"):
        assert not r.exists(f"dead_letter:webhook:{webhook_id}")
        record = statuses.get(webhook_id)
        assert record is not None and record.status == "pending"
    assert r.exists("dead_letter:webhook:wh_2"), "the timeout entry was not selected"
    queued = [json.loads(m) for m in r.lrange("compliance-compliance_webhooks", 0, -1)]  # type: ignore[union-attr]
    assert len(queued) == 2
