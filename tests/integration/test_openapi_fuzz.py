"""The spec tells the truth: schemathesis, every check, against the real server (``compliance
api`` as a subprocess on the test Redis). A bounded number of examples per operation and a fixed
seed (override with FUZZ_SEED / FUZZ_EXAMPLES); any finding fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.localredis import free_port
from tests.support.services import ADMIN_KEY, ApiServer, settings_from_env

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = Path(__file__).with_name("schemathesis.toml")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def server(env, tmp_path):
    # With an encryption key, so that the tenant routes create tenants rather than answer 503.
    api = ApiServer({**env, "COMPLIANCE_API_DOCS": "true",
                     "COMPLIANCE_TENANT_ENCRYPTION_KEYS": Fernet.generate_key().decode()},
                    tmp_path / "api.log").wait_ready()
    yield api
    api.stop()


def test_the_spec_declares_keys_errors_and_text_metrics(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {(s["type"], s.get("name") or s.get("scheme")) for s in schemes.values()} == {
        ("apiKey", "X-API-Key"), ("http", "bearer")}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            answers = operation["responses"]
            assert "431" in answers, where
            public = path.startswith("/health") or path == "/metrics"
            assert bool(operation.get("security")) is not public, where
            if not public:
                assert {"401", "403"} <= set(answers), where
            for status, answer in answers.items():
                if status >= "400" and not path.startswith("/health"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorBody", where
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    content = spec["paths"]["/reports/{report_id}/content"]["get"]["responses"]
    assert set(content["200"]["content"]) == {"application/json", "text/csv", "text/html"}
    assert "409" in content and "404" in content


def test_schemathesis_finds_nothing(server, tmp_path):
    # One worker: CPython 3.11 can fail parsing source in two threads at once ("AST constructor
    # recursion depth mismatch"), which hypothesis does to describe its filters.
    examples = os.environ.get("FUZZ_EXAMPLES", "50")
    seed = os.environ.get("FUZZ_SEED", "13")
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [SCHEMATHESIS, "--no-color", "--config-file", str(CONFIG), "run",
         f"{server.url}/openapi.json", "--checks", "all", "--workers", "1",
         "--max-examples", examples, "--seed", seed, "--request-timeout", "10",
         "--header", f"X-API-Key: {ADMIN_KEY}",
         "--report", "json", "--report-json-path", str(report)],
        capture_output=True, text=True, timeout=220, cwd=tmp_path)
    output = run.stdout + run.stderr
    print(output)  # shown with -s, or on failure
    assert run.returncode == 0, output[-20000:]
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, seed {seed}")
    assert summary["complete"] and not summary["failures"] and not summary["errors"], summary
    operations = summary["operations"]
    assert operations["tested"] == operations["total"] == 28, operations  # none skipped
    assert cases["generated"] >= 28 * int(examples), cases


# What the first runs found (seed 13), each pinned here so a change of seed cannot hide it.

def test_a_body_that_is_not_utf8_is_a_422_not_an_undeclared_400(api):
    answer = api.post("/webhooks", content=b'{"url": "\xff\xfe"}',
                      headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "body"


@pytest.mark.parametrize("body", [{"dry_run": 0}, {"dry_run": "true"}, {"limit": "5"},
                                  {"limit": 5.5}, {"limit": True}, {"older_than_seconds": "1"}])
def test_bodies_are_read_with_their_declared_json_types(api, body):
    answer = api.post("/dead-letters/replay", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 422, answer.text


def test_an_integral_number_is_an_integer(api):
    # JSON Schema: 5.0 is an integer, so the strict models must take it.
    answer = api.post("/dead-letters/replay", json={"limit": 5.0, "dry_run": True},
                      headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 200, answer.text


def test_webhook_fields_are_not_coerced(api):
    answer = api.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "event": 5, "payload": {}})
    assert answer.status_code == 422, answer.text


def test_readiness_shows_states_never_error_text(env):
    down = settings_from_env({**env, "COMPLIANCE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(down)) as anon:
        answer = anon.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json()["components"]["redis"]["status"] == "down"
    assert "127.0.0.1" not in answer.text and "Error" not in answer.text, answer.text
