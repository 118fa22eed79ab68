"""End to end: real Redis, real worker processes, a real receiver (and a real S3 server)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from tests.reports import evidence as ev
from tests.reports.conftest import S3Server
from tests.reports.test_api import good
from tests.reports.test_workflow import delivery_envelopes
from tests.support.receiver import Reply
from tests.support.services import SECRET, settings_from_env, wait_until


def test_report_completed_arrives_signed_and_the_content_matches(api, receiver, start_worker):
    start_worker(kind="all", concurrency=4)
    accepted = api.post("/reports", json=good(evidence=ev.soc2_mixed(), framework="soc2-access-control",
                                              webhook_url=receiver.url("/reports")),
                        headers={"X-Correlation-ID": "corr-e2e"}).json()
    (hook,) = receiver.wait_for(1, "/reports", timeout=60)
    Webhook(SECRET).verify(hook.body, hook.headers)  # raises on a bad signature
    assert hook.headers["webhook-id"] == accepted["webhook_id"]
    assert hook.headers["x-correlation-id"] == "corr-e2e"
    event = hook.json()
    assert event["type"] == "report.completed"
    data = event["data"]
    assert data["report_id"] == accepted["report_id"]
    summary = data["summary"]
    assert (summary["failed"], summary["not_applicable"]) == (5, 4)
    content = api.get(urlsplit(data["content_url"]).path).json()
    assert content["summary"] == summary
    assert sum(r["outcome"] == "fail" for r in content["results"]) == summary["failed"]
    assert {r["id"] for r in content["results"] if r["outcome"] == "fail"} == ev.SOC2_MIXED_FAILED
    record = api.get(f"/reports/{accepted['report_id']}").json()
    assert record["status"] == "completed" and record["summary"] == summary
    wait_until(lambda: api.get(f"/webhook-statuses/{accepted['webhook_id']}").json()["status"]
               == "delivered", timeout=30)


def test_s3_outage_fails_the_report_and_report_failed_is_delivered(
    env, receiver, start_worker, aws_env, tmp_path, r,
):
    server = S3Server(tmp_path / "moto.log").start()
    try:
        s3_env = {**env, "COMPLIANCE_STORAGE_BACKEND": "s3", "COMPLIANCE_S3_BUCKET": server.new_bucket(),
                  "COMPLIANCE_S3_ENDPOINT_URL": server.url}
        from fastapi.testclient import TestClient

        from compliance.api.app import create_app

        with TestClient(create_app(settings_from_env(s3_env)),
                        headers={"X-API-Key": env["COMPLIANCE_PRODUCER_API_KEYS"]}) as client:
            # /health shows states only (no backend names); the S3 probe answers
            assert client.get("/health").json()["components"]["storage"]["status"] == "up"
            accepted = client.post("/reports", json=good(webhook_url=receiver.url("/s3"))).json()
            server.stop()  # the outage: evidence was stored, the worker cannot read it back
            start_worker(kind="all", concurrency=2, extra_env={**s3_env, **aws_env})
            (hook,) = receiver.wait_for(1, "/s3", timeout=90)
            Webhook(SECRET).verify(hook.body, hook.headers)
            event = hook.json()
            assert event["type"] == "report.failed"
            assert event["data"]["error_type"] == "storage"
            record = client.get(f"/reports/{accepted['report_id']}").json()
            assert record["status"] == "failed" and record["error"] == event["data"]["reason"]
            assert client.get("/health").status_code == 503
    finally:
        server.stop()


def test_soft_time_limit_marks_the_report_failed_and_queues_report_failed(api, start_worker, r):
    start_worker(kind="reports", concurrency=1, extra_env={
        "COMPLIANCE_FACADE_CLASS": "tests.reports.facades:SlowFacade",
        "COMPLIANCE_TASK_SOFT_TIME_LIMIT": "2", "COMPLIANCE_TASK_TIME_LIMIT": "8"})
    accepted = api.post("/reports", json=good()).json()
    rid = accepted["report_id"]
    record = wait_until(lambda: (rec := api.get(f"/reports/{rid}").json())["status"] == "failed" and rec,
                        timeout=60, message="report not failed by the soft time limit")
    assert record["error_type"] == "time_limit" and "2 s" in record["error"]
    # Only a report worker runs here, so the webhook waits, pending, on the delivery queue.
    (env,) = delivery_envelopes(r)
    assert env["event"] == "report.failed" and env["webhook_id"] == accepted["webhook_id"]
    assert env["payload"]["error_type"] == "time_limit"
    status = api.get(f"/webhook-statuses/{accepted['webhook_id']}").json()
    assert status["status"] == "pending" and status["event"] == "report.failed"
    assert json.loads(r.get(f"compliance:report:{rid}"))["status"] == "failed"


def test_in_the_all_worker_a_slow_delivery_does_not_hold_report_generation(api, receiver,
                                                                           start_worker):
    """`--kind all` runs reports and hand-overs on one Celery thread: that thread must not stay
    with a webhook it handed to the engine, or a slow receiver would hold every report."""
    start_worker(kind="all", concurrency=4, extra_env={"COMPLIANCE_READ_TIMEOUT": "30"})
    receiver.default = Reply(200, delay=15)
    slow = api.post("/webhooks", json={"url": receiver.url("/slow"), "event": "e", "payload": {}})
    assert slow.status_code == 202, slow.text
    wait_until(lambda: receiver.arrived("/slow"), timeout=30, message="the slow webhook never arrived")
    accepted = api.post("/reports", json=good(webhook_url=receiver.url("/reports"))).json()
    # generated (and its webhook on its way) while the slow delivery is still held
    wait_until(lambda: api.get(f"/reports/{accepted['report_id']}").json()["status"] == "completed",
               timeout=10, message="the report waited for the slow delivery")
    assert not receiver.received("/slow")
