"""Pure Job builder and outcome parsing for DeadLetterReplay."""

from __future__ import annotations

import pytest

from compliance_operator.jobs import (
    build_job,
    job_name,
    job_phase,
    parse_summary,
    replay_actor,
    replay_command,
)
from compliance_operator.settings import OperatorSettings

CR = {"apiVersion": "reporting.compliance.io/v1alpha1", "kind": "DeadLetterReplay",
      "metadata": {"name": "replay-5xx", "namespace": "ns1", "uid": "uid-1234"},
      "spec": {"selector": {"errorType": "http_5xx", "destination": "https://h.example",
                            "olderThan": "1h", "newerThan": "7d", "limit": 500},
               "ratePerSecond": 2.5, "dryRun": True, "ttlSecondsAfterFinished": 600}}


def test_command_carries_every_selector_field() -> None:
    assert replay_command(CR["spec"]) == [
        "compliance", "dlq", "replay", "--error-type", "http_5xx", "--destination", "https://h.example",
        "--older-than", "1h", "--newer-than", "7d", "--limit", "500", "--rate", "2.5", "--dry-run",
        "--termination-log", "/dev/termination-log", "--actor", "system:operator"]
    assert replay_command({}, "system:operator:DeadLetterReplay/ns1/r") == [
        "compliance", "dlq", "replay", "--limit", "100", "--termination-log", "/dev/termination-log",
        "--actor", "system:operator:DeadLetterReplay/ns1/r"]


def test_the_job_names_its_custom_resource_to_the_audit_trail() -> None:
    command = build_job(body=CR, settings=OperatorSettings())["spec"]["template"]["spec"][
        "containers"][0]["command"]
    assert command[-2:] == ["--actor", "system:operator:DeadLetterReplay/ns1/replay-5xx"]
    assert replay_actor("n" * 63, "x" * 253).startswith("system:operator:") and len(
        replay_actor("n" * 63, "x" * 253)) == 128


def test_job_name_is_deterministic_per_instance_and_short() -> None:
    assert job_name("a", "u1") == job_name("a", "u1")
    assert job_name("a", "u1") != job_name("a", "u2")
    assert len(job_name("x" * 253, "u")) <= 63


def test_job_is_owned_restricted_and_single_shot() -> None:
    settings = OperatorSettings(replay_image="img:1", replay_env_from_secrets=["compliance-env"])
    job = build_job(body=CR, settings=settings)
    owner = job["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "reporting.compliance.io/v1alpha1", "kind": "DeadLetterReplay",
                      "name": "replay-5xx", "uid": "uid-1234", "controller": True,
                      "blockOwnerDeletion": True}]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["envFrom"] == [{"secretRef": {"name": "compliance-env"}}]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the CR's own envFrom/image win over the operator defaults
    own = build_job(body={**CR, "spec": {**CR["spec"], "image": "mine:2",
                                         "envFrom": [{"configMapRef": {"name": "cm"}}]}},
                    settings=settings)
    assert own["spec"]["template"]["spec"]["containers"][0]["image"] == "mine:2"
    assert own["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "cm"}}]


@pytest.mark.parametrize(("message", "want"), [
    ('{"dry_run": false, "failed": 0, "matched": 3, "replayed": 3, "skipped": 0}',
     {"matched": 3, "replayed": 3, "skipped": 0, "failed": 0}),
    # FallbackToLogsOnError: the log tail, summary on the last JSON line
    ('replay: 100%|####| 2/2\nerror: wh_1: boom\n{"dry_run": false, "failed": 1, "matched": 2, '
     '"replayed": 1, "skipped": 0}\n', {"matched": 2, "replayed": 1, "skipped": 0, "failed": 1}),
    ("Traceback ...\nConnectionError", None),
    (None, None),
])
def test_parse_summary(message: str | None, want: dict[str, int] | None) -> None:
    assert parse_summary(message) == want


@pytest.mark.parametrize(("status", "phase"), [
    ({}, "Pending"),
    ({"active": 1}, "Running"),
    ({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, "Succeeded"),
    ({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}, "Failed"),
    ({"active": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]}, "Failed"),
])
def test_job_phase(status: dict[str, object], phase: str) -> None:
    assert job_phase({"status": status}) == phase
