"""Report routes on a real Redis (in-process app): validation, records, queueing, content, health."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.reports.storage import evidence_key
from compliance.reports.storage.filesystem import FilesystemStorage
from tests.reports import evidence as ev

HOOK = "http://127.0.0.1:9/hook"


def good(**changes):
    return {"framework": "cloud-baseline", "subject": "acme-prod", "evidence": ev.cloud_pass(),
            "webhook_url": HOOK, "metadata": {"ticket": "SEC-1"}, **changes}


def fields(response) -> list[str]:
    return [d["field"] for d in response.json()["error"].get("details", [])]


def queued_messages(r, queue="compliance-compliance_queue") -> list[dict]:
    return [json.loads(m) for m in r.lrange(queue, 0, -1)]


def test_submit_answers_202_stores_evidence_and_queues_only_the_id(api, r, settings):
    response = api.post("/reports", json=good(), headers={"X-Correlation-ID": "corr-rep-1"})
    assert response.status_code == 202, response.text
    body = response.json()
    rid = body["report_id"]
    assert rid.startswith("rpt_") and body["webhook_id"].startswith("wh_")
    assert body["correlation_id"] == "corr-rep-1"
    assert body["status_url"].endswith(f"/reports/{rid}")
    record = api.get(f"/reports/{rid}").json()
    assert record["status"] == "queued" and record["webhook_id"] == body["webhook_id"]
    assert record["metadata"] == {"ticket": "SEC-1"} and record["summary"] is None
    assert 2_591_000 < r.ttl(f"compliance:report:{rid}") <= 2_592_000
    assert r.keys("webhook_status:*") == []  # no webhook exists until the report settles
    stored = FilesystemStorage(settings.storage_dir).get(evidence_key(rid))
    assert json.loads(stored) == ev.cloud_pass()
    (message,) = queued_messages(r)
    assert message["headers"]["task"] == "compliance.generate_report"
    assert message["headers"]["argsrepr"] == f"<report {rid}>"
    assert message["headers"]["correlation_id"] == "corr-rep-1"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [rid] and kwargs == {}
    assert "acme" not in json.dumps(message) and "mfa" not in json.dumps(message)


def test_content_is_not_ready_while_queued_and_unknown_ids_are_404(api):
    rid = api.post("/reports", json=good()).json()["report_id"]
    response = api.get(f"/reports/{rid}/content")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_ready"
    missing = "rpt_" + "0" * 32
    assert api.get(f"/reports/{missing}").status_code == 404
    assert api.get(f"/reports/{missing}/content").status_code == 404
    assert "path.report_id" in fields(api.get("/reports/not-an-id"))
    assert "query.format" in fields(api.get(f"/reports/{rid}/content?format=pdf"))


@pytest.mark.parametrize(("body", "field"), [
    (good(framework="pci-dss"), "body.framework"),
    (good(framework=""), "body.framework"),
    (good(evidence=[1, 2]), "body.evidence"),
    (good(evidence="text"), "body.evidence"),
    (good(evidence={}), "body.evidence"),
    (good(evidence={"unrelated": {"x": 1}}), "body.evidence"),
    (good(evidence={"iam": ["not", "an", "object"]}), "body.evidence.iam"),
    (good(evidence={**ev.cloud_pass(), "databases": {"id": "db"}}), "body.evidence.databases"),
    (good(webhook_url="http://10.1.2.3/hook"), "body.webhook_url"),
    (good(webhook_url="ftp://example.com/x"), "body.webhook_url"),
    (good(webhook_url=""), "body.webhook_url"),
    (good(subject=""), "body.subject"),
    (good(metadata={"big": "x" * 5000}), "body.metadata"),
    (good(metadata=[1]), "body.metadata"),
    ({**good(), "extra": 1}, "body.extra"),
    ({k: v for k, v in good().items() if k != "evidence"}, "body.evidence"),
])
def test_bad_input_is_a_422_naming_the_field(api, r, body, field):
    response = api.post("/reports", json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response), response.json()
    assert r.llen("compliance-compliance_queue") == 0
    assert r.keys("compliance:report:*") == []


def nested(depth: int) -> dict:
    """An object ``depth`` levels deep: {"a": {"a": ... {}}}."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def deep_evidence(depth: int) -> dict:
    """Passing evidence with one user's extra attribute nested so the whole is ``depth`` deep."""
    evidence = ev.cloud_pass()
    evidence["iam"]["users"][0]["tags"] = nested(depth - 4)  # evidence > iam > users > [0] > tags
    return evidence


@pytest.mark.parametrize(("body", "field"), [
    (good(metadata=nested(33)), "body.metadata"),
    # 255 levels: accepted before, then the worker could not serialize report.completed
    (good(metadata=nested(255)), "body.metadata"),
    (good(metadata=nested(300)), "body.metadata"),
    (good(evidence=deep_evidence(33)), "body.evidence"),
    (good(evidence=deep_evidence(300)), "body.evidence"),
])
def test_deeply_nested_json_is_a_422_naming_the_field(api, r, body, field):
    response = api.post("/reports", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert fields(response) == [field]
    assert r.llen("compliance-compliance_queue") == 0
    assert r.keys("compliance:report:*") == []


def test_json_at_the_depth_limit_is_accepted(api, settings):
    limit = settings.max_json_depth
    response = api.post("/reports", json=good(evidence=deep_evidence(limit), metadata=nested(limit)))
    assert response.status_code == 202, response.text


def test_oversized_evidence_is_413_naming_the_field(settings, r):
    small = settings.model_copy(update={"max_evidence_bytes": 2000})
    with TestClient(create_app(small), headers={"X-API-Key": "test-producer-key-0123456789"}) as client:
        evidence = ev.cloud_pass()
        evidence["iam"]["users"] += [{"name": f"user{i}", "console_access": False} for i in range(100)]
        response = client.post("/reports", json=good(evidence=evidence))
        assert response.status_code == 413, response.text
        assert fields(response) == ["body.evidence"]
        assert "2000" in response.json()["error"]["message"]
    assert r.llen("compliance-compliance_queue") == 0


def test_body_over_the_request_limit_is_413(api, settings):
    evidence = {"iam": {"users": [{"name": "u" * 1000}] * (settings.max_body_bytes // 1000 + 10)}}
    response = api.post("/reports", json=good(evidence=evidence))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_auth_is_required(settings):
    with TestClient(create_app(settings)) as anonymous:
        assert anonymous.post("/reports", json=good()).status_code == 401
        assert anonymous.get("/frameworks").status_code == 401


def test_frameworks_lists_packs_with_their_controls(api):
    body = api.get("/frameworks").json()
    by_id = {f["id"]: f for f in body["frameworks"]}
    assert set(by_id) == {"cloud-baseline", "soc2-access-control"}
    control = by_id["cloud-baseline"]["controls"][0]
    assert set(control) == {"id", "title", "severity"}
    assert len(by_id["soc2-access-control"]["controls"]) >= 10


def test_load_is_shed_when_the_report_queue_is_full(settings, r):
    tight = settings.model_copy(update={"max_queue_length": 1})
    with TestClient(create_app(tight), headers={"X-API-Key": "test-producer-key-0123456789"}) as client:
        assert client.post("/reports", json=good()).status_code == 202
        response = client.post("/reports", json=good())
        assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert r.llen("compliance-compliance_queue") == 1


def test_health_reports_facade_and_storage(api):
    components = api.get("/health").json()["components"]
    assert components["facade"]["status"] == "up"
    assert components["facade"]["controls"] > 0  # counts only: names and paths stay private
    assert components["storage"]["status"] == "up"
    assert "backend" not in components["storage"] and "frameworks" not in components["facade"]


def test_storage_outage_shows_in_health_and_refuses_reports(settings, tmp_path, r):
    (tmp_path / "blocked").write_text("not a directory")
    broken = settings.model_copy(update={"storage_dir": tmp_path / "blocked"})
    with TestClient(create_app(broken), headers={"X-API-Key": "test-producer-key-0123456789"}) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["components"]["storage"]["status"] == "down"
        refused = client.post("/reports", json=good())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        assert refused.json()["error"]["code"] == "storage_unavailable"
    assert r.keys("compliance:report:*") == [] and r.llen("compliance-compliance_queue") == 0


def test_broken_facade_shows_in_health(settings):
    broken = settings.model_copy(update={"facade_class": "tests.reports.facades:NotAFacade"})
    with TestClient(create_app(broken), headers={"X-API-Key": "test-producer-key-0123456789"}) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["components"]["facade"]["status"] == "down"
        assert client.get("/frameworks").status_code == 503
        assert client.post("/reports", json=good()).status_code == 503
