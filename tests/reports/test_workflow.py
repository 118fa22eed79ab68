"""The report workflow in-process on a real Redis: settle once, fail loudly, never lose a webhook."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from compliance.api.app import create_app
from compliance.reports.storage import document_key
from compliance.reports.workflow import content_url
from compliance.settings import Settings
from compliance.store import keys
from compliance.wiring import Container
from tests.reports import evidence as ev
from tests.reports.test_api import good, nested
from tests.support.services import PRODUCER_KEY

DELIVERY_QUEUE = "compliance-compliance_webhooks"


def delivery_envelopes(r) -> list[dict]:
    """The envelopes of the webhooks signalled on the delivery queue (kept in their records)."""
    out = []
    for raw in r.lrange(DELIVERY_QUEUE, 0, -1):
        (webhook_id,), _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append(json.loads(r.hget(keys.webhook_key(webhook_id), "env")))
    return out


@pytest.fixture
def runtime(settings):
    rt = Container(settings)
    yield rt
    rt.redis.close()


def test_metadata_at_the_highest_depth_setting_still_reaches_the_webhook(r, settings):
    # max_json_depth is capped at 128 so the worker can read the record back and send the webhook.
    with pytest.raises(ValidationError, match="max_json_depth"):
        Settings(dev_mode=True, max_json_depth=129)
    deepest = settings.model_copy(update={"max_json_depth": 128})
    metadata = nested(128)
    with TestClient(create_app(deepest), headers={"X-API-Key": PRODUCER_KEY}) as client:
        accepted = client.post("/reports", json=good(metadata=metadata))
        assert accepted.status_code == 202, accepted.text
        rt = Container(deepest)
        try:
            assert rt.report_workflow.generate(accepted.json()["report_id"]) == "completed"
        finally:
            rt.redis.close()
    (env,) = delivery_envelopes(r)
    assert env["event"] == "report.completed" and env["payload"]["metadata"] == metadata


def test_generate_stores_the_document_then_sends_report_completed_once(api, r, runtime, settings):
    accepted = api.post("/reports", json=good(evidence=ev.cloud_mixed()),
                        headers={"X-Correlation-ID": "corr-wf"}).json()
    rid = accepted["report_id"]
    assert runtime.report_workflow.generate(rid) == "completed"
    record = api.get(f"/reports/{rid}").json()
    assert record["status"] == "completed" and record["summary"]["failed"] == 5
    assert record["started_at"] <= record["finished_at"]
    (env,) = delivery_envelopes(r)
    assert env["webhook_id"] == accepted["webhook_id"] and env["event"] == "report.completed"
    assert env["report_id"] == rid and env["correlation_id"] == "corr-wf"
    payload = env["payload"]
    assert payload["summary"] == record["summary"] and payload["metadata"] == {"ticket": "SEC-1"}
    assert payload["content_url"] == content_url(settings, rid)
    assert "results" not in payload  # a link, not the whole report
    status = api.get(f"/webhook-statuses/{accepted['webhook_id']}").json()
    assert status["status"] == "pending" and status["report_id"] == rid
    content = api.get(f"/reports/{rid}/content").json()
    assert content["summary"] == record["summary"] and len(content["results"]) == 17
    # Redelivered message (acks_late): nothing is redone or resent.
    assert runtime.report_workflow.generate(rid) == "duplicate"
    assert len(delivery_envelopes(r)) == 1
    csv_text = api.get(f"/reports/{rid}/content?format=csv")
    assert csv_text.headers["content-type"].startswith("text/csv") and "CB-1.1" in csv_text.text
    assert api.get(f"/reports/{rid}/content?format=html").text.startswith("<!doctype html>")


def test_storage_outage_fails_the_report_and_sends_report_failed(api, r, runtime, settings):
    rid = api.post("/reports", json=good()).json()["report_id"]
    settings.storage_dir.joinpath("reports").write_text("a file where the directory should be")
    assert runtime.report_workflow.generate(rid) == "failed"
    record = api.get(f"/reports/{rid}").json()
    assert record["status"] == "failed" and record["error_type"] == "storage"
    assert "could not store the report" in record["error"]
    (env,) = delivery_envelopes(r)
    assert env["event"] == "report.failed" and env["payload"]["error_type"] == "storage"
    assert env["payload"]["reason"] == record["error"]
    assert api.get(f"/reports/{rid}/content").status_code == 404
    assert runtime.report_workflow.generate(rid) == "duplicate"
    assert len(delivery_envelopes(r)) == 1


def test_missing_evidence_fails_the_report(api, r, runtime, settings):
    rid = api.post("/reports", json=good()).json()["report_id"]
    settings.storage_dir.joinpath("evidence", f"{rid}.json").unlink()
    assert runtime.report_workflow.generate(rid) == "failed"
    assert delivery_envelopes(r)[0]["payload"]["reason"].startswith("could not read the evidence")


def test_a_facade_bug_fails_the_report(api, r, settings):
    rid = api.post("/reports", json=good()).json()["report_id"]
    rt = Container(settings.model_copy(update={"facade_class": "tests.reports.facades:ExplodingFacade"}))
    assert rt.report_workflow.generate(rid) == "failed"
    (env,) = delivery_envelopes(r)
    assert env["payload"]["error_type"] == "facade" and "engine bug" in env["payload"]["reason"]


def test_a_task_that_keeps_dying_ends_as_failed(api, r, runtime, settings):
    rid = api.post("/reports", json=good()).json()["report_id"]
    for _ in range(settings.max_redeliveries):
        runtime.reports.count_run(rid)  # earlier starts that never finished (worker killed)
    assert runtime.report_workflow.generate(rid) == "failed"
    (env,) = delivery_envelopes(r)
    assert env["payload"]["error_type"] == "poison"


def test_an_expired_record_is_skipped(runtime, r):
    assert runtime.report_workflow.generate("rpt_" + "1" * 32) == "missing"
    assert r.llen(DELIVERY_QUEUE) == 0
    assert document_key("rpt_1") == "reports/rpt_1.json"
