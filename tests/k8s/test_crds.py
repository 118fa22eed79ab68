"""manifests/crds on a real kube-apiserver: they install, bad specs are refused by the server
itself (OpenAPI schema, CEL rules, strict field validation), and the samples are accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from k8s_helpers import AUTOSCALERS, CRD_DIR, GROUP, REPLAYS, SAMPLES_DIR, VERSION, raw, yaml_docs
from kubernetes import client

pytestmark = pytest.mark.k8s

BASE = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{{plural}}"
PLURALS = {"WorkerAutoscaler": AUTOSCALERS, "DeadLetterReplay": REPLAYS}
CRD_DOCS = [d for p in sorted(CRD_DIR.glob("*.yaml")) for d in yaml_docs(p)]
SAMPLES = [d for p in sorted(SAMPLES_DIR.glob("*.yaml")) for d in yaml_docs(p)]


def _crd_for(obj: dict[str, Any]) -> dict[str, Any]:
    group, version = obj["apiVersion"].split("/")
    for crd in CRD_DOCS:
        spec = crd["spec"]
        if (spec["group"], spec["names"]["kind"]) == (group, obj["kind"]) and any(
                v["name"] == version for v in spec["versions"]):
            return crd
    raise AssertionError(f"no CRD in {CRD_DIR} serves {obj['apiVersion']} {obj['kind']}")


def _sample(kind: str) -> dict[str, Any]:
    for doc in SAMPLES:
        if doc["kind"] == kind:
            return doc
    raise AssertionError(f"no {kind} sample in {SAMPLES_DIR}")


def _path(obj: dict[str, Any], ns: str) -> str:
    spec = _crd_for(obj)["spec"]
    where = f"/namespaces/{ns}" if spec["scope"] == "Namespaced" else ""
    return f"/apis/{obj['apiVersion']}{where}/{spec['names']['plural']}"


def _create(api: client.ApiClient, ns: str, obj: dict[str, Any], *, strict: bool = True,
            dry_run: bool = False) -> tuple[int, Any, list[str]]:
    query = {"fieldValidation": "Strict" if strict else "Warn"}
    if dry_run:
        query["dryRun"] = "All"
    return raw(api, "POST", _path(obj, ns), body=obj, query=query)


def _wa(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_sample("WorkerAutoscaler"))
    obj["metadata"] = {"name": "wa-under-test"}
    obj["spec"].update(spec)
    return obj


def _dlr(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_sample("DeadLetterReplay"))
    obj["metadata"] = {"name": "dlr-under-test"}
    obj["spec"].update(spec)
    return obj


def _causes(body: Any) -> str:
    """The server's message and causes, for matching the reason of a refusal."""
    if not isinstance(body, dict):
        return str(body)
    causes = (body.get("details") or {}).get("causes") or []
    return " | ".join([str(body.get("message", ""))] + [f"{c.get('field')}: {c.get('message')}" for c in causes])


def test_crds_are_established_and_discoverable(crds: list[str], k8s_api_client) -> None:
    assert {f"{REPLAYS}.{GROUP}", f"{AUTOSCALERS}.{GROUP}"} <= set(crds)
    assert sorted(crds) == sorted(d["metadata"]["name"] for d in CRD_DOCS)
    status, body, _ = raw(k8s_api_client, "GET", f"/apis/{GROUP}/{VERSION}")
    assert status == 200, body
    served = {r["name"]: r for r in body["resources"]}
    for plural, short in ((AUTOSCALERS, "wa"), (REPLAYS, "dlr")):
        assert plural in served and f"{plural}/status" in served, served.keys()
        assert served[plural]["namespaced"] is True
        assert short in served[plural].get("shortNames", [])
        assert "compliance" in served[plural].get("categories", [])


def test_every_kind_has_a_sample() -> None:
    assert {"WorkerAutoscaler", "DeadLetterReplay"} <= {d["kind"] for d in SAMPLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in SAMPLES])
def test_samples_are_accepted_strictly(crds, k8s_api_client, k8s_namespace: str,
                                       sample: dict[str, Any]) -> None:
    status, body, warnings = _create(k8s_api_client, k8s_namespace, sample, dry_run=True)
    assert status == 201, _causes(body)
    status, body, warnings = _create(k8s_api_client, k8s_namespace, sample)
    assert status == 201, _causes(body)
    assert not warnings, warnings
    status, stored, _ = raw(k8s_api_client, "GET", f"{_path(sample, k8s_namespace)}/{sample['metadata']['name']}")
    assert status == 200, stored
    # Every field of the sample survives (nothing pruned): the sample matches the schema.
    content = {k: v for k, v in sample.items() if k not in ("apiVersion", "kind", "metadata")}
    assert _subset(content, stored), (content, stored)


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_subset, want, have))
    return bool(want == have)


def test_server_applies_schema_defaults(crds, k8s_api_client, k8s_namespace: str) -> None:
    minimal = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerAutoscaler",
               "metadata": {"name": "minimal"},
               "spec": {"scaleTargetRef": {"name": "worker"}, "redis": {"secretRef": {"name": "redis"}},
                        "queue": "compliance_queue", "maxReplicas": 3}}
    status, body, _ = _create(k8s_api_client, k8s_namespace, minimal)
    assert status == 201, _causes(body)
    spec = body["spec"]
    assert spec["minReplicas"] == 1
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert spec["redis"] == {"secretRef": {"name": "redis", "key": "COMPLIANCE_REDIS_URL"},
                             "keyPrefix": "compliance-"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["breakerPolicy"]["enabled"] is True

    replay = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeadLetterReplay",
              "metadata": {"name": "minimal"}, "spec": {}}
    status, body, _ = _create(k8s_api_client, k8s_namespace, replay)
    assert status == 201, _causes(body)
    assert body["spec"]["selector"] == {"limit": 100}
    assert body["spec"]["dryRun"] is False


BAD_AUTOSCALERS = {
    "min_above_max": (dict(minReplicas=5, maxReplicas=2), "minReplicas must be less than or equal to maxReplicas"),
    "default_min_above_max_zero": (dict(minReplicas=0, maxReplicas=0), "spec.maxReplicas"),
    "max_not_integer": (dict(maxReplicas="ten"), "spec.maxReplicas"),
    "min_negative": (dict(minReplicas=-1), "spec.minReplicas"),
    "max_too_large": (dict(maxReplicas=5000), "spec.maxReplicas"),
    "paused_not_bool": (dict(paused="yes"), "spec.paused"),
    "queue_bad_chars": (dict(queue="compliance queue!"), "spec.queue"),
    "queue_empty": (dict(queue=""), "spec.queue"),
    "target_kind_statefulset": (dict(scaleTargetRef={"name": "w", "kind": "StatefulSet"}), "spec.scaleTargetRef.kind"),
    "target_name_uppercase": (dict(scaleTargetRef={"name": "Worker_1"}), "spec.scaleTargetRef.name"),
    "redis_without_secret": (dict(redis={"keyPrefix": "x-"}), "spec.redis.secretRef"),
    "share_above_one": (dict(breakerPolicy={"openShareThreshold": 1.5}), "spec.breakerPolicy.openShareThreshold"),
    "step_zero": (dict(behavior={"scaleUp": {"maxStep": 0}}), "spec.behavior.scaleUp.maxStep"),
    "unknown_spec_field": (dict(replicaz=3), 'unknown field "spec.replicaz"'),
    "unknown_nested_field": (dict(redis={"secretRef": {"name": "r"}, "url": "redis://x"}), 'unknown field "spec.redis.url"'),
}


def _assert_refused(status: int, body: Any, reason: str) -> None:
    """422 Invalid for schema/CEL errors; 400 BadRequest for unknown fields under Strict."""
    expected = (400, "BadRequest") if reason.startswith("unknown field") else (422, "Invalid")
    assert (status, body.get("reason")) == expected, (status, body)
    assert reason in _causes(body), _causes(body)


@pytest.mark.parametrize("case", list(BAD_AUTOSCALERS))
def test_bad_workerautoscaler_is_refused_by_the_server(crds, k8s_api_client, k8s_namespace: str,
                                                       case: str) -> None:
    spec, reason = BAD_AUTOSCALERS[case]
    for dry_run in (True, False):
        status, body, _ = _create(k8s_api_client, k8s_namespace, _wa(**spec), dry_run=dry_run)
        _assert_refused(status, body, reason)
    assert client.CustomObjectsApi(k8s_api_client).list_namespaced_custom_object(
        GROUP, VERSION, k8s_namespace, AUTOSCALERS)["items"] == []


def test_missing_required_fields_are_refused(crds, k8s_api_client, k8s_namespace: str) -> None:
    obj = _wa()
    del obj["spec"]["queue"], obj["spec"]["maxReplicas"]
    status, body, _ = _create(k8s_api_client, k8s_namespace, obj)
    assert status == 422
    assert "spec.queue: Required value" in _causes(body)
    assert "spec.maxReplicas: Required value" in _causes(body)
    status, body, _ = _create(k8s_api_client, k8s_namespace, {**obj, "spec": None})
    assert status == 422, body


def test_unknown_fields_are_pruned_unless_strict(crds, k8s_api_client, k8s_namespace: str) -> None:
    """Without fieldValidation=Strict a structural schema drops unknown fields (with a warning)."""
    status, body, warnings = _create(k8s_api_client, k8s_namespace, _wa(replicaz=3), strict=False)
    assert status == 201, _causes(body)
    assert "replicaz" not in body["spec"]
    assert any("unknown field" in w and "spec.replicaz" in w for w in warnings), warnings


def test_cel_rule_also_guards_updates(crds, k8s_api_client, k8s_namespace: str) -> None:
    status, body, _ = _create(k8s_api_client, k8s_namespace, _wa(minReplicas=2, maxReplicas=4))
    assert status == 201, _causes(body)
    path = BASE.format(ns=k8s_namespace, plural=AUTOSCALERS) + "/wa-under-test"
    status, body, _ = raw(k8s_api_client, "PATCH", path, body={"spec": {"maxReplicas": 1}},
                          content_type="application/merge-patch+json")
    assert status == 422, body
    assert "minReplicas must be less than or equal to maxReplicas" in _causes(body)
    status, body, _ = raw(k8s_api_client, "PATCH", path, body={"spec": {"maxReplicas": 8}},
                          content_type="application/merge-patch+json")
    assert status == 200, _causes(body)
    assert body["spec"]["maxReplicas"] == 8


BAD_REPLAYS = {
    "older_not_shorter_than_newer": (dict(selector={"olderThan": "7d", "newerThan": "1h"}),
                                     "olderThan must be shorter than newerThan"),
    "duration_unit_weeks": (dict(selector={"olderThan": "1w"}), "spec.selector.olderThan"),
    "destination_not_http": (dict(selector={"destination": "ftp://x"}), "spec.selector.destination"),
    "limit_zero": (dict(selector={"limit": 0}), "spec.selector.limit"),
    # An integer 0 slips past `minimum: 0.01` (the server truncates the bound to int for int
    # values); `compliance dlq replay --rate 0` then dies with a usage error in the Job.
    "rate_zero_int": (dict(ratePerSecond=0), "spec.ratePerSecond"),
    "rate_zero_float": (dict(ratePerSecond=0.0), "spec.ratePerSecond"),
    "rate_below_min": (dict(ratePerSecond=0.005), "spec.ratePerSecond"),
    "dry_run_string": (dict(dryRun="true"), "spec.dryRun"),
    "envfrom_both_refs": (dict(envFrom=[{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]),
                          "exactly one of secretRef or configMapRef"),
    "envfrom_neither_ref": (dict(envFrom=[{}]), "exactly one of secretRef or configMapRef"),
    "deadline_too_short": (dict(activeDeadlineSeconds=1), "spec.activeDeadlineSeconds"),
    "unknown_field": (dict(parallelism=4), 'unknown field "spec.parallelism"'),
}


@pytest.mark.parametrize("case", list(BAD_REPLAYS))
def test_bad_deadletterreplay_is_refused_by_the_server(crds, k8s_api_client, k8s_namespace: str,
                                                       case: str) -> None:
    spec, reason = BAD_REPLAYS[case]
    status, body, _ = _create(k8s_api_client, k8s_namespace, _dlr(**spec))
    _assert_refused(status, body, reason)


def test_deadletterreplay_spec_is_immutable(crds, k8s_api_client, k8s_namespace: str) -> None:
    status, body, _ = _create(k8s_api_client, k8s_namespace, _dlr())
    assert status == 201, _causes(body)
    path = BASE.format(ns=k8s_namespace, plural=REPLAYS) + "/dlr-under-test"
    flipped = not body["spec"].get("dryRun", False)  # a real change (the sample is a dry run)
    status, body, _ = raw(k8s_api_client, "PATCH", path, body={"spec": {"dryRun": flipped}},
                          content_type="application/merge-patch+json")
    assert status == 422, body
    assert "spec is immutable" in _causes(body)
    # Labels and the status stay writable.
    status, body, _ = raw(k8s_api_client, "PATCH", path, body={"metadata": {"labels": {"team": "a"}}},
                          content_type="application/merge-patch+json")
    assert status == 200, _causes(body)


def test_status_is_a_subresource_with_a_schema(crds, k8s_api_client, k8s_namespace: str) -> None:
    status, body, _ = _create(k8s_api_client, k8s_namespace, _dlr())
    assert status == 201, _causes(body)
    path = BASE.format(ns=k8s_namespace, plural=REPLAYS) + "/dlr-under-test"
    # Status written through the main resource is ignored...
    status, body, _ = raw(k8s_api_client, "PATCH", path, body={"status": {"phase": "Running"}},
                          content_type="application/merge-patch+json")
    assert status == 200 and "status" not in body, body
    # ...accepted through /status, and validated there.
    status, body, _ = raw(k8s_api_client, "PATCH", path + "/status",
                          body={"status": {"phase": "Succeeded", "replayed": 3}},
                          content_type="application/merge-patch+json")
    assert status == 200, _causes(body)
    assert body["status"]["phase"] == "Succeeded"
    status, body, _ = raw(k8s_api_client, "PATCH", path + "/status", body={"status": {"phase": "Done"}},
                          content_type="application/merge-patch+json", query={"fieldValidation": "Strict"})
    assert status == 422, body
    assert "status.phase" in _causes(body)


def test_printer_columns_render(crds, k8s_api_client, k8s_namespace: str) -> None:
    """`kubectl get wa` columns: the server evaluates the CRD's JSONPaths into a Table."""
    status, body, _ = _create(k8s_api_client, k8s_namespace, _wa())
    assert status == 201, _causes(body)
    status, table, _ = raw(k8s_api_client, "GET", BASE.format(ns=k8s_namespace, plural=AUTOSCALERS),
                           accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert status == 200, table
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:5] == ["Name", "Target", "Queue", "Min", "Max"], columns
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    sample = _sample("WorkerAutoscaler")["spec"]
    assert cells["Target"] == sample["scaleTargetRef"]["name"] and cells["Queue"] == sample["queue"]
    assert cells["Max"] == 10
