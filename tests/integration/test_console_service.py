"""The console's server side without a browser (real app in-process, real Redis): sessions,
key revocation, bad input as clear 4xx pages, the readings behind the overview, and the stores
it added (report index, outcomes by minute, DLQ by error type). The browser tier is
tests/console."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.api.console import service
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import DeadLetter, Status, WebhookStatus
from compliance.store.reports import ReportRecord, ReportStatus, ReportStore
from compliance.store.statuses import StatusStore
from compliance.wiring import Container
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, settings_from_env

HTTPS = "https://testserver"  # the session cookie is Secure: the test client sends it over https only


def signed_in(settings, key: str = ADMIN_KEY) -> TestClient:
    client = TestClient(create_app(settings), base_url=HTTPS)
    client.__enter__()
    form = client.get("/console")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = client.post("/console/sign-in", data={"csrf": token, "api_key": key},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: TestClient, path: str = "/console") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def test_sign_in_needs_its_form_token_and_a_known_key(settings):
    with TestClient(create_app(settings), base_url=HTTPS) as client:
        page = client.get("/console")
        assert page.status_code == 200 and 'name="api_key"' in page.text
        refused = client.post("/console/sign-in", data={"api_key": ADMIN_KEY},
                              follow_redirects=False)
        assert refused.status_code == 403  # no form token
        token = csrf_of(client)
        wrong = client.post("/console/sign-in", data={"csrf": token, "api_key": "x" * 20})
        assert wrong.status_code == 401 and "not valid" in wrong.text


def test_removing_a_key_from_the_settings_ends_its_sessions(settings, env):
    client = signed_in(settings)
    try:
        assert "Overview" in client.get("/console").text
        rotated = settings_from_env({**env, "COMPLIANCE_ADMIN_API_KEYS": "another-admin-key-0123456789"})
        with TestClient(create_app(rotated), base_url=HTTPS, cookies=client.cookies) as after:
            page = after.get("/console/breakers", follow_redirects=False)
            assert page.status_code == 303  # back to the sign-in page
            assert after.get("/console/live/overview").status_code == 401
    finally:
        client.__exit__(None, None, None)


def test_sessions_keep_neither_the_key_nor_the_token(settings, r):
    client = signed_in(settings)
    try:
        token = client.cookies.get("compliance_console")
        keys = list(r.scan_iter("compliance:console_session:*"))
        assert len(keys) == 1 and token not in keys[0]
        stored = r.get(keys[0])
        assert ADMIN_KEY not in stored and token not in stored
        assert 0 < r.ttl(keys[0]) <= settings.console_session_ttl
        client.post("/console/sign-out", data={"csrf": csrf_of(client)})
        assert not list(r.scan_iter("compliance:console_session:*"))
    finally:
        client.__exit__(None, None, None)


def test_bad_input_gets_a_clear_4xx_page(settings):
    client = signed_in(settings)
    try:
        assert client.get("/console/webhooks?status=bogus").status_code == 400
        assert client.get("/console/webhooks?cursor=%%%").status_code == 400
        csrf = csrf_of(client)
        gone = client.post("/console/breakers/reset", data={"csrf": csrf, "name": "http://nope:1"})
        assert gone.status_code == 404 and "No circuit breaker" in gone.text
        bad = client.post("/console/dead-letters/replay", data={"csrf": csrf, "limit": "many"})
        assert bad.status_code == 400
        cleanup = client.post("/console/cleanup", data={"csrf": csrf, "status": "delivered",
                                                        "older_than_days": "nan"})
        assert cleanup.status_code == 400
        assert client.get("/console/reports/rpt_nope/download").status_code in (404, 422)
        crowded = "&".join(f"f{i}=x" for i in range(60))
        many = client.post("/console/breakers/reset", content=f"csrf={csrf}&{crowded}",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert many.status_code == 400
        assert client.post("/console/sign-in", content=crowded,
                           headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 400
    finally:
        client.__exit__(None, None, None)


def test_a_producer_key_cannot_reach_admin_pages_or_actions(settings):
    client = signed_in(settings, PRODUCER_KEY)
    try:
        home = client.get("/console")
        assert "/console/dead-letters\"" not in home.text and "read-only" in home.text
        for path in ("/console/dead-letters", "/console/dead-letters/wh_x", "/console/breakers",
                     "/console/breakers/reset?name=x", "/console/cleanup?status=failed",
                     "/console/dead-letters/wh_x/replay"):
            answer = client.get(path)
            assert answer.status_code == 403, path
            assert "needs an admin API key" in answer.text and "Content-Security-Policy" in answer.headers
        csrf = csrf_of(client)
        for path, data in (("/console/breakers/reset", {"name": "x"}), ("/console/cleanup", {}),
                           ("/console/dead-letters/wh_x/replay", {}), ("/console/dead-letters/replay", {})):
            answer = client.post(path, data={"csrf": csrf, **data})
            assert answer.status_code == 403 and "needs an admin API key" in answer.text, path
    finally:
        client.__exit__(None, None, None)


def test_without_a_session_admin_pages_go_to_sign_in_and_actions_are_refused(settings):
    with TestClient(create_app(settings), base_url=HTTPS, follow_redirects=False) as client:
        for path in ("/console/dead-letters", "/console/breakers", "/console/cleanup"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/console", path
        for path in ("/console/breakers/reset", "/console/cleanup", "/console/dead-letters/replay"):
            answer = client.post(path, data={"csrf": "x"})
            assert answer.status_code == 401 and "sign in again" in answer.text, path


def test_the_console_can_be_turned_off(env):
    off = settings_from_env({**env, "COMPLIANCE_CONSOLE_ENABLED": "false"})
    with TestClient(create_app(off), base_url=HTTPS) as client:
        assert client.get("/console").status_code == 404
        assert client.get("/console/static/console.js").status_code == 404


def test_pages_carry_a_strict_csp_and_links_under_the_root_path(env):
    prefixed = settings_from_env({**env, "COMPLIANCE_ROOT_PATH": "/ops"})
    with TestClient(create_app(prefixed), base_url=HTTPS) as client:
        page = client.get("/ops/console")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert 'action="/ops/console/sign-in"' in page.text
        assert "Path=/ops/console" in page.headers["set-cookie"]
        assert "<script>" not in page.text and "style=" not in page.text
        assert client.get("/ops/console/static/console.js").status_code == 200
        # A proxy that strips the prefix reaches the same pages, still linked under it.
        stripped = client.get("/console")
        assert stripped.status_code == 200 and 'action="/ops/console/sign-in"' in stripped.text
        assert client.get("/health/live").status_code == 200  # probes need no prefix


def test_outcomes_are_counted_per_bucket(settings, r):
    statuses = StatusStore(r, settings)
    now = time.time()
    for i, (status, ago) in enumerate([(Status.DELIVERED, 30), (Status.DELIVERED, 90),
                                       (Status.FAILED, 90), (Status.PENDING, 30)]):
        statuses.put(WebhookStatus(webhook_id=f"wh_{i}", destination="https://e.com", event="e",
                                   status=status, created_at=now - ago, updated_at=now - ago))
    assert statuses.outcomes(now=now, window=180, buckets=3) == [(0, 0), (1, 1), (1, 0)]


def test_chart_scales_to_the_peak_and_survives_an_empty_hour():
    empty = service.chart([(0, 0)] * 60, bucket_seconds=60)
    assert empty.peak_rate == 0 and empty.success_points == "" and empty.rate_points
    chart = service.chart([(0, 0), (60, 0), (30, 30)], bucket_seconds=60, width=200, height=100)
    assert chart.peak_rate == 1.0
    assert chart.rate_points == "0.0,100.0 100.0,0.0 200.0,0.0"
    assert chart.success_dots == [(100.0, 0.0), (200.0, 50.0)]


def test_report_index_lists_newest_first_and_forgets_expired_records(r):
    store = ReportStore(r, ttl=60, runs_ttl=60)
    now = time.time()
    for i in range(3):
        store.create(ReportRecord(report_id=f"rpt_{i}", framework="f", subject="s",
                                  status=ReportStatus.QUEUED, webhook_id="wh", webhook_url="https://e.com",
                                  created_at=now + i, updated_at=now + i), lease_until=now + 60)
    items, total = store.page(offset=0, limit=2)
    assert [i.report_id for i in items] == ["rpt_2", "rpt_1"] and total == 3
    r.delete("compliance:report:rpt_2")
    items, total = store.page(offset=0, limit=5)
    assert [i.report_id for i in items] == ["rpt_1", "rpt_0"] and total == 2
    _, total = store.page(offset=0, limit=5, now=now + 120)  # past the record TTL
    assert total == 0


def test_dead_letters_by_error_type(r, settings):
    store = DeadLetterStore(r, settings)
    now = time.time()
    for i, kind in enumerate(["timeout", "http_5xx", "timeout"]):
        store.put(DeadLetter(webhook_id=f"wh_{i}", destination="https://e.com", event="e", payload={},
                             error_type=kind, error="x", created_at=now, failed_at=now))
    assert store.counts_by_error_type() == ({"timeout": 2, "http_5xx": 1}, True)
    assert store.counts_by_error_type(limit=2) == ({"timeout": 1, "http_5xx": 1}, False)  # newest 2


@pytest.mark.parametrize("role_key", [ADMIN_KEY, PRODUCER_KEY])
def test_overview_reads_every_number(settings, r, role_key):
    r.zadd("compliance:parked:https://slow.example:443", {"wh_a": 1, "wh_b": 2})
    r.zadd("compliance:index:parked", {"https://slow.example:443": 1})
    view = service.overview(Container(settings), workers=2)
    assert view.dead_letters == 0 and view.workers == 2 and view.breakers["open"] == 0
    assert view.parked == 2
    assert set(view.ready) == {settings.queue_name, settings.delivery_queue_name}
    assert view.redis_used > 0 and view.chart.buckets == service.CHART_BUCKETS
    # Delivered records are kept 30 min: the chart spans that, not an hour it cannot see.
    assert view.chart.window == min(3600, settings.status_ttl_delivered) == 1800
    client = signed_in(settings, role_key)
    try:
        live = client.get("/console/live/overview")
        assert live.status_code == 200 and "Redis memory" in live.text
        assert "parked (breaker open, or at the cap)</dt><dd>2<" in live.text
    finally:
        client.__exit__(None, None, None)


def test_cleanup_asks_first_then_deletes_what_it_said(settings, r):
    statuses = StatusStore(r, settings)
    now = time.time()
    for i, status in enumerate([Status.FAILED, Status.FAILED, Status.PENDING]):
        statuses.put(WebhookStatus(webhook_id=f"wh_{i}", destination="https://e.com", event="e",
                                   status=status, created_at=now - 86400 * 3, updated_at=now - 86400 * 3))
    client = signed_in(settings)
    try:
        confirm = client.get("/console/cleanup?status=failed&older_than_days=2")
        assert confirm.status_code == 200 and "Delete every failed status record" in confirm.text
        assert statuses.count(Status.FAILED) == 2  # asking deletes nothing
        done = client.post("/console/cleanup", data={"csrf": csrf_of(client), "status": "failed",
                                                     "older_than_days": "2"})
        assert done.status_code == 200 and "Deleted 2 failed status records" in done.text
        assert statuses.count(Status.FAILED) == 0 and statuses.count(Status.PENDING) == 1
        no_token = client.post("/console/cleanup", data={"status": "", "older_than_days": "0"})
        assert no_token.status_code == 403 and statuses.count(Status.PENDING) == 1
    finally:
        client.__exit__(None, None, None)


def test_docs_show_every_screenshot_the_tests_take():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    shown = set(re.findall(r"\(console/([a-z0-9-]+\.png)\)", (docs / "console.md").read_text()))
    taken = {p.name for p in (docs / "console").glob("*.png")}
    assert shown == taken
    named = set(re.findall(r'shoot\(page, "([a-z0-9-]+)"\)',
                           (Path(__file__).resolve().parents[1] / "console" / "test_console.py").read_text()))
    assert {f"{n}.png" for n in named} == taken  # regenerated by `make console-screenshots`
