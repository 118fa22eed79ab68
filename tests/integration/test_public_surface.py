"""What the service shows without a key, and how it serves documents (real app, real Redis):
/health gives states and counts only, the docs and the spec are off outside dev mode,
GET /dead-letters/replay is a 405, and every answer carries nosniff (report content and HTML
pages a strict Content-Security-Policy)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.api.security_headers import STRICT_CSP
from compliance.wiring import Container
from tests.reports import evidence as ev
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, settings_from_env


def test_health_shows_states_and_counts_never_names_or_paths(settings, tmp_path):
    with TestClient(create_app(settings)) as anon:
        body = anon.get("/health").json()
    text = str(body)
    assert str(settings.storage_dir) not in text and str(tmp_path) not in text
    for name, component in body["components"].items():
        assert isinstance(component["status"], str), name
        for key, value in component.items():
            assert key == "status" or isinstance(value, int | float | dict), (name, key, value)
    assert isinstance(body["components"]["celery"]["workers"], int)  # a count, not host names
    assert set(body["components"]["circuit_breakers"]) >= {"status", "closed", "open", "half_open"}


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_and_spec_are_off_outside_dev_mode_unless_asked_for(env, path):
    with TestClient(create_app(settings_from_env(env))) as client:
        assert client.get(path).status_code == 404
    with TestClient(create_app(settings_from_env({**env, "COMPLIANCE_API_DOCS": "true"}))) as client:
        assert client.get(path).status_code == 200
    dev = {k: v for k, v in env.items() if "API_KEYS" not in k} | {"COMPLIANCE_DEV_MODE": "true"}
    with TestClient(create_app(settings_from_env(dev))) as client:
        assert client.get(path).status_code == 200


def test_get_dead_letters_replay_is_a_405_not_a_lookup(api):
    admin = {"X-API-Key": ADMIN_KEY}
    response = api.get("/dead-letters/replay", headers=admin)
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert api.get("/dead-letters/wh_replay", headers=admin).status_code == 404  # ids still work
    assert api.get("/dead-letters/replayed", headers=admin).status_code == 404


def test_every_answer_says_nosniff(api, settings):
    answers = [api.get("/health/live"), api.get("/nope"), api.get("/metrics"),
               api.post("/webhooks", content=b"x" * (settings.max_body_bytes + 1),
                        headers={"content-type": "application/json"})]
    assert [a.status_code for a in answers] == [200, 404, 200, 413]
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)


def test_report_content_is_served_with_a_strict_csp(settings, r):
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as client:
        evidence = ev.cloud_pass()
        evidence["account"]["note"] = "<script>alert(1)</script>"
        rid = client.post("/reports", json={
            "framework": "cloud-baseline", "subject": "<img src=x onerror=alert(1)>",
            "evidence": evidence, "webhook_url": "http://127.0.0.1:9/hook"}).json()["report_id"]
        runtime = Container(settings)
        try:
            assert runtime.report_workflow.generate(rid) == "completed"
        finally:
            runtime.close()
        for fmt in ("html", "json", "csv"):
            answer = client.get(f"/reports/{rid}/content?format={fmt}")
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-security-policy"] == STRICT_CSP
            assert "script-src" not in STRICT_CSP and "default-src 'none'" in STRICT_CSP
