"""Pure builders for DeadLetterReplay Jobs and for reading their outcome."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from compliance_operator import GROUP, VERSION
from compliance_operator.settings import OperatorSettings

TERMINATION_LOG = "/dev/termination-log"
# An emptyDir: the root filesystem is read-only, Python and tqdm may still want a scratch dir.
SCRATCH_DIR = "/tmp"  # noqa: S108
REPLAY_LABEL = f"{GROUP}/deadletterreplay"
MANAGED_BY = {"app.kubernetes.io/managed-by": "compliance-operator"}
COUNT_KEYS = ("matched", "replayed", "skipped", "failed")


def job_name(cr_name: str, cr_uid: str) -> str:
    """Deterministic per CR *instance*: a restarted operator finds the Job it already made.

    The uid part keeps a re-created CR of the same name from adopting a stale Job; the result
    fits the 63-character label value Kubernetes derives from a Job name.
    """
    digest = hashlib.sha256(cr_uid.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]", "-", cr_name.lower())[:45].strip("-") or "replay"
    return f"{base}-replay-{digest}"


def replay_command(spec: Mapping[str, Any], actor: str = "system:operator") -> list[str]:
    """``compliance dlq replay ...`` for the spec's selector, rate and dry-run flag; the audit
    trail names ``actor`` for its replays."""
    selector = spec.get("selector") or {}
    cmd = ["compliance", "dlq", "replay"]
    for key, flag in (("errorType", "--error-type"), ("destination", "--destination"),
                      ("olderThan", "--older-than"), ("newerThan", "--newer-than")):
        if selector.get(key):
            cmd += [flag, str(selector[key])]
    cmd += ["--limit", str(int(selector.get("limit", 100)))]
    if spec.get("ratePerSecond") is not None:
        cmd += ["--rate", _number(spec["ratePerSecond"])]
    if spec.get("dryRun"):
        cmd.append("--dry-run")
    cmd += ["--termination-log", TERMINATION_LOG, "--actor", actor]
    return cmd


def replay_actor(namespace: str, name: str) -> str:
    """The audit trail's actor for a DeadLetterReplay's Job: the custom resource it runs for."""
    return f"system:operator:DeadLetterReplay/{namespace}/{name}"[:128]


def _number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def build_job(*, body: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The one Job of a DeadLetterReplay: owned by it, restricted, never retried.

    ``backoffLimit: 0`` because a second pod would report only what was left, not the totals
    (replay is idempotent per entry, so a manual re-run is safe, just separately counted).
    """
    meta = body["metadata"]
    spec = body.get("spec") or {}
    name = job_name(meta["name"], meta["uid"])
    labels = {**MANAGED_BY, "app.kubernetes.io/name": "compliance-reporting",
              "app.kubernetes.io/component": "dlq-replay", REPLAY_LABEL: meta["name"]}
    env_from = list(spec.get("envFrom") or []) or (
        [{"secretRef": {"name": n}} for n in settings.replay_env_from_secrets]
        + [{"configMapRef": {"name": n}} for n in settings.replay_env_from_configmaps])
    container: dict[str, Any] = {
        "name": "replay",
        "image": spec.get("image") or settings.replay_image,
        "imagePullPolicy": settings.replay_image_pull_policy,
        "command": replay_command(spec, replay_actor(meta.get("namespace") or "", meta["name"])),
        "envFrom": env_from,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "TMPDIR", "value": SCRATCH_DIR}],
        "terminationMessagePath": TERMINATION_LOG,
        # If the summary was never written (crash), the log tail still carries it or the error.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": settings.replay_cpu_request, "memory": settings.replay_memory_request},
            "limits": {"memory": settings.replay_memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.replay_run_as_user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": SCRATCH_DIR}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the replay talks to Redis, never to the API
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    account = spec.get("serviceAccountName") or settings.replay_service_account
    if account:
        pod_spec["serviceAccountName"] = account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeadLetterReplay",
                "name": meta["name"], "uid": meta["uid"],
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.get("activeDeadlineSeconds", 3600)),
            "ttlSecondsAfterFinished": int(spec.get("ttlSecondsAfterFinished", 86400)),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def parse_summary(message: str | None) -> dict[str, int] | None:
    """The counts from the replay's JSON summary (last JSON line of the termination message)."""
    for raw in reversed((message or "").strip().splitlines()):
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and all(k in data for k in COUNT_KEYS):
            return {k: int(data[k]) for k in COUNT_KEYS}
    return None


def job_phase(job: Mapping[str, Any]) -> str:
    """Pending | Running | Succeeded | Failed from a Job's status."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if cond.get("status") == "True" and cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    if status.get("succeeded"):
        return "Succeeded"
    if status.get("failed"):
        return "Failed"
    if status.get("active") or status.get("ready"):
        return "Running"
    return "Pending"
