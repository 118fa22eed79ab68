"""``compliance report`` against the real app (in-process transport, real Redis)."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from compliance.cli import report as report_cli
from compliance.cli.main import cli
from tests.reports import evidence as ev


@pytest.fixture
def run(api, monkeypatch):
    seen: dict[str, object] = {}

    def client(api_url: str, api_key: str | None, timeout: float) -> httpx.Client:
        seen.update(api_url=api_url, api_key=api_key)
        return httpx.Client(transport=api._transport, base_url="http://testserver",
                            headers=dict(api.headers))

    monkeypatch.setattr(report_cli, "make_client", client)

    def _run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, ["report", "--api-url", "http://api:8000", *args], input=input)

    _run.seen = seen  # type: ignore[attr-defined]
    return _run


def test_submit_then_show(run, runtime_for_cli, tmp_path):
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(ev.cloud_pass()))
    result = run("submit", "--framework", "cloud-baseline", "--subject", "acme", "--evidence",
                 str(evidence), "--webhook-url", "http://127.0.0.1:9/hook", "--metadata", "ticket=SEC-9")
    assert result.exit_code == 0, result.output
    accepted = json.loads(result.output)
    assert run.seen["api_url"] == "http://api:8000"
    shown = json.loads(run("show", accepted["report_id"]).output)
    assert shown["status"] == "queued" and shown["metadata"] == {"ticket": "SEC-9"}
    runtime_for_cli.report_workflow.generate(accepted["report_id"])
    csv_out = run("show", accepted["report_id"], "--content", "--format", "csv")
    assert csv_out.exit_code == 0 and csv_out.output.startswith("control_id,")
    assert "CB-5.2" in run("frameworks").output


def test_errors_are_readable(run, tmp_path):
    bad = run("submit", "--framework", "nope", "--subject", "a", "--evidence", "-",
              "--webhook-url", "http://127.0.0.1:9/h", input=json.dumps({"iam": {}}))
    assert bad.exit_code == 1 and "HTTP 422" in bad.output and "body.framework" in bad.output
    not_json = run("submit", "--framework", "cloud-baseline", "--subject", "a", "--evidence", "-",
                   "--webhook-url", "http://127.0.0.1:9/h", input="{")
    assert not_json.exit_code == 2 and "not JSON" in not_json.output
    missing = run("show", "rpt_" + "0" * 32)
    assert missing.exit_code == 1 and "HTTP 404" in missing.output


@pytest.fixture
def runtime_for_cli(settings):
    from compliance.wiring import Container

    rt = Container(settings)
    yield rt
    rt.redis.close()
