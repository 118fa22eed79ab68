"""The HTTP API on a real Redis: validation, auth, limits, listing, cleanup, health, metrics."""

from __future__ import annotations

import base64
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from compliance.api.app import create_app
from compliance.localredis import LocalRedis
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import Attempt, DeadLetter, Status, WebhookStatus
from compliance.store.statuses import StatusStore
from tests.support.services import ADMIN_KEY, FAST_ENV, PRODUCER_KEY, settings_from_env, wait_until

GOOD = {"url": "http://127.0.0.1:9/hook", "event": "report.completed", "payload": {"a": 1}}


def error_fields(response) -> list[str]:
    return [d["field"] for d in response.json()["error"].get("details", [])]


def test_submit_returns_202_and_creates_pending_record(api, r):
    response = api.post("/webhooks", json=GOOD, headers={"X-Correlation-ID": "corr-123"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["correlation_id"] == "corr-123"
    assert response.headers["x-correlation-id"] == "corr-123"
    assert body["status_url"].endswith(f"/webhook-statuses/{body['webhook_id']}")
    record = api.get(f"/webhook-statuses/{body['webhook_id']}").json()
    assert record["status"] == "pending" and record["correlation_id"] == "corr-123"
    assert r.llen("compliance-compliance_webhooks") == 1
    assert 604000 < r.ttl(f"webhook_status:{body['webhook_id']}") <= 604800


def test_correlation_id_is_generated_when_absent(api):
    response = api.post("/webhooks", json=GOOD)
    assert len(response.headers["x-correlation-id"]) >= 32
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]


@pytest.mark.parametrize(("body", "field"), [
    ({**GOOD, "url": "ftp://example.com/x"}, "body.url"),
    ({**GOOD, "url": "http://10.0.0.1/x"}, "body.url"),
    ({**GOOD, "url": "http://169.254.169.254/latest"}, "body.url"),
    ({**GOOD, "url": ""}, "body.url"),
    ({**GOOD, "url": "http://user:pw@127.0.0.1:9/"}, "body.url"),
    ({**GOOD, "url": "x" * 3000}, "body.url"),
    ({**GOOD, "event": "has spaces"}, "body.event"),
    ({**GOOD, "event": ""}, "body.event"),
    ({**GOOD, "payload": [1, 2]}, "body.payload"),
    ({**GOOD, "payload": "text"}, "body.payload"),
    ({"url": GOOD["url"], "event": "e"}, "body.payload"),
    ({"event": "e", "payload": {}}, "body.url"),
    ({**GOOD, "unexpected": 1}, "body.unexpected"),
])
def test_every_validation_error_is_a_422_naming_the_field(api, r, body, field):
    response = api.post("/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert field in error_fields(response)
    assert r.keys("webhook_status:*") == [] and r.llen("compliance-compliance_webhooks") == 0


def nested_json(depth: int, inner: str = "{}") -> str:
    """``depth`` levels of objects and arrays as raw JSON text (json.dumps itself would recurse)."""
    opens = "".join("[" if i % 2 else '{"a":' for i in range(depth - 1))
    closes = "".join("]" if i % 2 else "}" for i in reversed(range(depth - 1)))
    return opens + inner + closes


def raw_webhook(payload_json: str) -> str:
    return '{"url":"http://127.0.0.1:9/hook","event":"e","payload":' + payload_json + "}"


@pytest.mark.parametrize("depth", [33, 256, 300, 900])
def test_deeply_nested_payload_is_a_422_not_a_500(api, r, depth):
    # 256 levels is about 1 KB, far under the body limit; pydantic cannot serialize it.
    content = raw_webhook(nested_json(depth))
    response = api.post("/webhooks", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert error_fields(response) == ["body.payload"]
    assert "32" in response.json()["error"]["message"]
    assert r.keys("webhook_status:*") == [] and r.llen("compliance-compliance_webhooks") == 0


def test_payload_at_the_depth_limit_is_accepted(api, settings):
    content = raw_webhook(nested_json(settings.max_json_depth))
    response = api.post("/webhooks", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text


def test_malformed_json_and_wrong_content(api):
    response = api.post("/webhooks", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_query_validation(api, admin_headers):
    assert api.get("/webhook-statuses?status=bogus").status_code == 422
    assert api.get("/webhook-statuses?limit=0").status_code == 422
    assert api.get("/webhook-statuses?limit=100000").status_code == 422
    bad_cursor = api.get("/webhook-statuses?cursor=%%%")
    assert bad_cursor.status_code == 422 and "query.cursor" in error_fields(bad_cursor)
    assert api.post("/webhook-cleanup?status=nope", headers=admin_headers).status_code == 422
    neg = api.post("/webhook-cleanup?older_than_days=-1", headers=admin_headers)
    assert neg.status_code == 422 and "query.older_than_days" in error_fields(neg)


@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_cursor_with_a_non_finite_score_is_a_422_not_a_503(api, r, settings, score):
    # Well-formed base64 of "<score>|<member>": Redis refuses a NaN bound, and an infinite one
    # does not come from any page we hand out.
    store = StatusStore(r, settings)
    store.put(WebhookStatus(webhook_id="wh_1", destination="https://e.com", event="e",
                            status=Status.PENDING, created_at=time.time(), updated_at=time.time()))
    cursor = base64.urlsafe_b64encode(f"{score}|wh_1".encode()).decode().rstrip("=")
    response = api.get(f"/webhook-statuses?cursor={cursor}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert error_fields(response) == ["query.cursor"]


def test_body_size_limit_gives_413_and_loses_nothing(api, r, settings):
    big = {**GOOD, "payload": {"blob": "x" * (settings.max_body_bytes + 10)}}
    response = api.post("/webhooks", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert r.keys("webhook_status:*") == []
    # chunked upload without content-length is counted as it streams
    def chunks():
        yield b'{"url":"http://127.0.0.1:9/","event":"e","payload":{"x":"'
        for _ in range(settings.max_body_bytes // 1000 + 2):
            yield b"x" * 1000
        yield b'"}}'
    streamed = api.post("/webhooks", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_unknown_ids_are_404(api, admin_headers):
    response = api.get("/webhook-statuses/wh_nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert api.get("/dead-letters/wh_nope", headers=admin_headers).status_code == 404
    assert api.post("/dead-letters/wh_nope/replay", headers=admin_headers).status_code == 404
    assert api.get("/no/such/path").status_code == 404


def test_dead_letter_listing_total_counts_the_filtered_entries(api, r, settings, admin_headers):
    store = DeadLetterStore(r, settings)
    now = time.time()
    for i in range(12):
        etype, host = ("timeout", "a") if i < 3 else ("http_5xx", "b")
        store.put(DeadLetter(webhook_id=f"wh_{i:03d}", destination=f"https://{host}.example.com/h",
                             event="e", payload={}, attempts=[Attempt(at=now, error_type=etype)],
                             error_type=etype, error="boom", created_at=now - i, failed_at=now - i))
    page = api.get("/dead-letters?error_type=timeout&limit=2", headers=admin_headers).json()
    assert [e["webhook_id"] for e in page["items"]] == ["wh_000", "wh_001"]
    assert page["total"] == 3 and page["total_exact"] is True
    by_host = api.get("/dead-letters?destination=https://b.&limit=5&offset=5",
                      headers=admin_headers).json()
    assert len(by_host["items"]) == 4 and by_host["total"] == 9
    both = api.get("/dead-letters?error_type=timeout&destination=https://b.",
                   headers=admin_headers).json()
    assert both["items"] == [] and both["total"] == 0
    everything = api.get("/dead-letters?limit=1", headers=admin_headers).json()
    assert len(everything["items"]) == 1 and everything["total"] == 12
    described = api.app.openapi()["components"]["schemas"]["DeadLetterPage"]
    assert "matching the filters" in described["properties"]["total"]["description"]


def test_auth_producer_and_admin_keys(settings):
    with TestClient(create_app(settings)) as anon:
        assert anon.post("/webhooks", json=GOOD).status_code == 401
        assert anon.get("/webhook-statuses").status_code == 401
        assert anon.post("/webhooks", json=GOOD, headers={"X-API-Key": "wrong-key-xxxxxxxx"}).status_code == 403
        assert anon.post("/webhooks", json=GOOD, headers={"X-API-Key": PRODUCER_KEY}).status_code == 202
        assert anon.post("/webhooks", json=GOOD,
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 202
        # admin endpoints refuse producer keys
        assert anon.post("/webhook-cleanup", headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
        assert anon.get("/dead-letters", headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
        assert anon.post("/circuit-breakers/x/reset", headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
        assert anon.post("/webhook-cleanup?older_than_days=30", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        # health, liveness and metrics stay open for probes and scrapers
        assert anon.get("/health/live").status_code == 200
        assert anon.get("/metrics").status_code == 200


def test_dev_mode_runs_open(env):
    dev = settings_from_env({k: v for k, v in env.items() if "API_KEYS" not in k}
                            | {"COMPLIANCE_DEV_MODE": "true"})
    with TestClient(create_app(dev)) as client:
        assert client.post("/webhooks", json=GOOD).status_code == 202
        assert client.post("/webhook-cleanup?older_than_days=30").status_code == 200


def test_listing_and_cleanup_through_http(api, r, settings, admin_headers):
    store = StatusStore(r, settings)
    now = time.time()
    for i in range(30):
        # delivered records live 30 min, so only failed ones can be days old
        status = Status.DELIVERED if i % 2 else Status.FAILED
        at = now - 600 + i if status is Status.DELIVERED else now - 86400 * 2 + i
        store.put(WebhookStatus(webhook_id=f"wh_{i:03d}", destination="https://e.com", event="e",
                                status=status, created_at=at, updated_at=at))
    page = api.get("/webhook-statuses?limit=10").json()
    assert len(page["items"]) == 10 and page["total"] == 30 and page["next_cursor"]
    assert page["items"][0]["webhook_id"] == "wh_029"  # newest change first
    rest = api.get(f"/webhook-statuses?limit=50&cursor={page['next_cursor']}").json()
    assert len(rest["items"]) == 20 and rest["next_cursor"] is None
    failed = api.get("/webhook-statuses?status=failed&limit=100").json()
    assert len(failed["items"]) == 15 and {i["status"] for i in failed["items"]} == {"failed"}
    # the seed's command: delivered records never reach a day old, so it deletes nothing
    seed = api.post("/webhook-cleanup?status=delivered&older_than_days=1", headers=admin_headers).json()
    assert seed["deleted"] == 0
    result = api.post("/webhook-cleanup?status=failed&older_than_days=1", headers=admin_headers).json()
    assert result["deleted"] == 15
    assert len(r.keys("webhook_status:*")) == 15
    assert api.post("/webhook-cleanup?older_than_days=30", headers=admin_headers).json()["deleted"] == 0
    bare = api.post("/webhook-cleanup", headers=admin_headers)  # no age: refused, deletes nothing
    assert bare.status_code == 422 and "query.older_than_days" in error_fields(bare)
    assert len(r.keys("webhook_status:*")) == 15
    assert api.post("/webhook-cleanup?older_than_days=0", headers=admin_headers).json()["deleted"] == 15
    assert r.keys("webhook_status:*") == []


def test_cleaning_up_pending_webhooks_cancels_their_delivery(api, r, admin_headers, receiver,
                                                             start_worker):
    """Pending records cleaned up (say, stuck ones) take their delivery state with them: no
    worker sends them afterwards, and nothing of them is left in Redis."""
    ids = [api.post("/webhooks", json={"url": receiver.url("/gone"), "event": "e",
                                       "payload": {}}).json()["webhook_id"] for _ in range(3)]
    done = api.post("/webhook-cleanup?status=pending&older_than_days=0", headers=admin_headers)
    assert done.json()["deleted"] == 3
    assert not r.keys("compliance:webhook:*")
    assert r.zcard("compliance:schedule:leased") == 0
    start_worker(kind="deliveries")
    # the queued signals are taken and dropped: the queue empties and nothing is sent
    wait_until(lambda: r.llen("compliance-compliance_webhooks") == 0, timeout=30)
    probe = api.post("/webhooks", json={"url": receiver.url("/after"), "event": "e", "payload": {}})
    receiver.wait_for(1, "/after")  # a later webhook goes: the worker was taking work
    assert receiver.received("/gone") == []
    assert all(api.get(f"/webhook-statuses/{i}").status_code == 404 for i in ids)
    assert probe.status_code == 202


def test_load_shedding_503_with_retry_after(env, r):
    settings = settings_from_env({**env, "COMPLIANCE_MAX_QUEUE_LENGTH": "3"})
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as client:
        codes = [client.post("/webhooks", json=GOOD).status_code for _ in range(5)]
        assert codes == [202, 202, 202, 503, 503]
        shed = client.post("/webhooks", json=GOOD)
        assert shed.headers["retry-after"] == str(settings.shed_retry_after_seconds)
        assert shed.json()["error"]["code"] == "overloaded"
    assert r.llen("compliance-compliance_webhooks") == 3


def test_metrics_parse_and_show_redis_state(api, r):
    api.post("/webhooks", json=GOOD)
    text = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["redis_up"].samples[0].value == 1
    statuses = {s.labels["status"]: s.value for s in families["webhook_status_records"].samples}
    assert statuses["pending"] == 1
    queues = {s.labels["queue"]: s.value for s in families["celery_queue_length"].samples}
    assert queues["compliance_webhooks"] == 1
    assert families["dead_letter_queue_size"].samples[0].value == 0
    assert "http_requests" in families  # counters are exposed without the _total suffix in names
    routes = {s.labels.get("route") for s in families["http_requests"].samples}
    assert "/webhooks" in routes and all(not (x or "").startswith("/webhook-statuses/wh_") for x in routes)


def test_health_turns_503_when_redis_dies_and_recovers(tmp_path):
    server = LocalRedis(data_dir=tmp_path / "redis").start()
    settings = settings_from_env({**FAST_ENV, "COMPLIANCE_REDIS_URL": server.url})
    try:
        with TestClient(create_app(settings)) as client:
            healthy = client.get("/health")
            assert healthy.status_code == 200, healthy.text
            assert healthy.json()["components"]["redis"]["status"] == "up"
            # no worker runs: celery is degraded but the API still serves
            assert healthy.json()["components"]["celery"]["status"] == "degraded"
            server.kill()
            down = client.get("/health")
            assert down.status_code == 503
            assert down.json()["status"] == "unhealthy"
            assert down.json()["components"]["redis"]["status"] == "down"
            assert client.get("/health/live").status_code == 200
            # a write while Redis is down is a clean 503, not a 500
            failed = client.post("/webhooks", json=GOOD, headers={"X-API-Key": PRODUCER_KEY})
            assert failed.status_code == 503
            metrics = client.get("/metrics")
            assert metrics.status_code == 200 and "redis_up 0.0" in metrics.text
            server.start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                again = client.get("/health")
                if again.status_code == 200:
                    break
                time.sleep(0.2)
            assert again.status_code == 200 and again.json()["components"]["redis"]["status"] == "up"
    finally:
        server.stop()
