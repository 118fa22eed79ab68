"""Fair shares between tenants, on a real Redis (and, end to end, a real worker and receiver).

- A tenant past its cap of live webhooks, or its submission rate, gets 429 with Retry-After;
  other tenants are accepted; the fleet's 503 stays the last guard.
- Signals past the fair depth wait in the fair backlog and are let onto the delivery list in
  turns between tenants, so one tenant's flood does not hold up another's single webhook.
- A SIGKILL while the backlog feeds the list loses nothing.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from cryptography.fernet import Fernet
from fastapi import Request
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.api.deps import require_producer
from compliance.api.principal import Principal
from compliance.delivery import fairshare
from compliance.delivery.fairshare import TenantLimits
from compliance.delivery.models import Envelope, status_record
from compliance.store import keys
from compliance.store.records import Status
from compliance.store.schedule import Admission
from compliance.wiring import Container
from compliance_operator.metrics_source import read_snapshot
from tests.reports import evidence
from tests.support.receiver import Reply
from tests.support.services import PRODUCER_KEY, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(300)
# Named tenants' webhooks are signed with their own secrets, kept encrypted with this key.
ENCRYPTION_KEY = Fernet.generate_key().decode()
QUEUE = "compliance-compliance_webhooks"


def _container(env: dict[str, str], **extra: str) -> Container:
    return Container(settings_from_env({**env, **extra}))


def _env(webhook_id: str, tenant: str | None, url: str = "http://127.0.0.1:9/hook") -> Envelope:
    return Envelope(webhook_id=webhook_id, url=url, event="e", payload={}, tenant=tenant)


@pytest.fixture
def tenant_api(env: dict[str, str]) -> Iterator[tuple[TestClient, Container]]:
    """The real app, whose producer is the tenant named in ``X-Test-Tenant`` (none: the
    default tenant): a Principal as the tenants branch's keys will resolve it."""
    settings = settings_from_env({**env, "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "3",
                                  "COMPLIANCE_DEFAULT_TENANT_MAX_LIVE_WEBHOOKS": "3",
                                  "COMPLIANCE_FAIR_QUEUE_DEPTH": "2"})
    app = create_app(settings)

    async def as_tenant(request: Request) -> Principal:
        tenant = request.headers.get("X-Test-Tenant")
        return Principal(role="producer", key_id=f"key_{tenant}", tenant=tenant)

    app.dependency_overrides[require_producer] = as_tenant
    with TestClient(app, headers={"X-API-Key": PRODUCER_KEY}) as client:
        yield client, app.state.container


def _post(api: TestClient, tenant: str | None, url: str = "http://127.0.0.1:9/hook") -> object:
    headers = {"X-Test-Tenant": tenant} if tenant else {}
    return api.post("/webhooks", json={"url": url, "event": "e", "payload": {}}, headers=headers)


def test_without_its_cap_set_the_default_tenant_meets_only_the_fleets_queue_length(env):
    settings = settings_from_env({**env, "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "2"})
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
        for _ in range(4):
            assert _post(api, None).status_code == 202


def test_a_tenant_at_its_cap_gets_429_and_other_tenants_do_not(tenant_api):
    api, container = tenant_api
    accepted = []
    for _ in range(3):
        response = _post(api, "acme")
        assert response.status_code == 202, response.text
        accepted.append(response.json()["webhook_id"])
    refused = _post(api, "acme")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "tenant_cap"
    assert refused.headers["Retry-After"] == str(container.settings.shed_retry_after_seconds)
    # POST /reports ends in a webhook of the same tenant: refused the same way, nothing stored
    report = api.post("/reports", headers={"X-Test-Tenant": "acme"}, json={
        "framework": "cloud-baseline", "subject": "s", "evidence": evidence.cloud_pass(),
        "webhook_url": "http://127.0.0.1:9/hook"})
    assert report.status_code == 429, report.text
    assert report.json()["error"]["code"] == "tenant_cap"
    accepted_report = api.post("/reports", headers={"X-Test-Tenant": "globex"}, json={
        "framework": "cloud-baseline", "subject": "s", "evidence": evidence.cloud_pass(),
        "webhook_url": "http://127.0.0.1:9/hook"})
    assert accepted_report.status_code == 202, accepted_report.text
    report_id = accepted_report.json()["report_id"]
    assert container.reports.get(report_id).tenant == "globex"
    # other tenants, and the default tenant, are not affected
    for other in ("globex", None, None, None):
        assert _post(api, other).status_code == 202
    assert _post(api, None).status_code == 429  # the default tenant's own cap (set here)
    # the tenant carried into the record
    record = container.statuses.get(accepted[0])
    assert record is not None and record.tenant == "acme"
    # one of acme's webhooks delivered: it has room for one more
    env = Envelope.model_validate_json(container.schedule.envelope(accepted[0]) or "")
    container.ledger.delivered(env, time.time())
    assert container.schedule.live("acme") == 2
    assert _post(api, "acme").status_code == 202
    assert _post(api, "acme").status_code == 429


def test_a_cleaned_up_webhook_no_longer_counts_against_its_tenants_cap(tenant_api, admin_headers):
    api, container = tenant_api
    for _ in range(3):
        assert _post(api, "acme").status_code == 202
    assert _post(api, "acme").status_code == 429
    cleaned = api.post("/webhook-cleanup?status=pending&older_than_days=0", headers=admin_headers)
    assert cleaned.status_code == 200, cleaned.text
    assert container.schedule.live("acme") == 0
    assert _post(api, "acme").status_code == 202


def test_a_tenant_over_its_rate_gets_429_with_the_wait(env):
    settings = settings_from_env({**env, "COMPLIANCE_TENANT_SUBMIT_RATE": "0.5",
                                  "COMPLIANCE_TENANT_SUBMIT_BURST": "2"})
    app = create_app(settings)

    async def as_tenant(request: Request) -> Principal:
        tenant = request.headers.get("X-Test-Tenant")
        return Principal(role="producer", key_id="k", tenant=tenant)

    app.dependency_overrides[require_producer] = as_tenant
    with TestClient(app, headers={"X-API-Key": PRODUCER_KEY}) as api:
        assert _post(api, "acme").status_code == 202
        assert _post(api, "acme").status_code == 202  # the burst of 2
        refused = _post(api, "acme")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "tenant_rate"
        # one submission every 2 s: the next passes within 2 s
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert _post(api, "globex").status_code == 202
        assert _post(api, "globex").status_code == 202


def test_the_fleets_full_queue_still_answers_503_and_counts_the_backlog(env):
    settings = settings_from_env({**env, "COMPLIANCE_MAX_QUEUE_LENGTH": "5",
                                  "COMPLIANCE_FAIR_QUEUE_DEPTH": "2"})
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as api:
        for _ in range(5):
            assert _post(api, None).status_code == 202
        container: Container = api.app.state.container  # type: ignore[attr-defined]
        assert container.redis.llen(QUEUE) == 2
        assert container.schedule.backlogged() == 3
        assert container.queue_length(settings.delivery_queue_name) == 5
        full = _post(api, None)
        assert full.status_code == 503
        assert "Retry-After" in full.headers


def test_the_accept_script_decides_as_the_pure_function(env, r):
    """``fairshare.decide`` is the specification; the script must agree with it, step by step,
    over a random run of submissions, deliveries and clock steps by two tenants."""
    container = _container(env)
    limits = TenantLimits(cap=4, rate=2.0, burst=3)
    rng = random.Random(15)
    now = 1_800_000_000.0
    live: dict[str | None, list[str]] = {"a": [], None: []}
    tat: dict[str | None, float | None] = {"a": None, None: None}
    seen = collections.Counter()
    for step in range(300):
        tenant = rng.choice(["a", None])
        action = rng.random()
        if action < 0.25:
            now += rng.choice([0.1, 0.3, 0.6, 1.5])
            continue
        if action < 0.4 and live[tenant]:
            webhook_id = live[tenant].pop(rng.randrange(len(live[tenant])))
            container.ledger.delivered(_env(webhook_id, tenant), now)
            continue
        expected, new_tat = fairshare.decide(queued=0, most_queued=0, live=len(live[tenant]),
                                             limits=limits, now=now, tat=tat[tenant])
        webhook_id = f"wh_{step}"
        got = container.ledger.accept(_env(webhook_id, tenant), now, limits=limits)
        assert got.admission is expected.admission, (step, got, expected)
        assert got.wait == pytest.approx(expected.wait, abs=1e-5)
        seen[got.admission] += 1
        if got.accepted:
            live[tenant].append(webhook_id)
            tat[tenant] = new_tat
            assert r.exists(keys.status_key(webhook_id))
        else:
            assert not r.exists(keys.status_key(webhook_id))  # refused: nothing written
    # the run went through every branch
    assert seen[Admission.ACCEPTED] and seen[Admission.TENANT_CAP] and seen[Admission.TENANT_RATE]
    container.close()


def test_the_backlog_lets_a_newcomer_go_next_and_tenants_take_turns(env, r):
    container = _container(env, COMPLIANCE_FAIR_QUEUE_DEPTH="2",
                           COMPLIANCE_DELIVERY_SWEEP_BATCH="500")
    schedule = container.schedule
    for i in range(10):
        container.submitter.submit(_env(f"a{i}", "a"))
    for i in range(3):
        container.submitter.submit(_env(f"b{i}", "b"))
    container.submitter.submit(_env("c0", None))
    # two signals on the list, the rest backlogged: in none of due, leased or parked
    assert r.llen(QUEUE) == 2
    assert schedule.backlogged() == 12
    assert r.zscore(keys.LEASE_INDEX, "a2") is None and r.exists(keys.webhook_key("a2"))

    order = []
    for _ in range(20):
        # a worker empties the list; the sweep tops it up to the depth, lowest tags first
        while (raw := r.rpop(QUEUE)) is not None:
            order.append(json.loads(raw)["headers"]["webhook_id"])
        schedule.sweep(now=time.time(), signal_until=time.time() + 300, limit=500)
    assert sorted(order) == sorted([f"a{i}" for i in range(10)] + ["b0", "b1", "b2", "c0"])
    # a0, a1 were on the list; then a, b and the default tenant take turns until b and c are out
    assert order[:2] == ["a0", "a1"]
    assert order.index("c0") <= 4 and order.index("b2") <= 9, order
    assert [x for x in order if x.startswith("a")] == [f"a{i}" for i in range(10)]  # FIFO each
    # each let out with its signal lease, as if pushed at once
    assert r.zscore(keys.LEASE_INDEX, "a9") is not None
    assert schedule.backlogged() == 0 and not r.exists(keys.FAIR_TAGS)
    container.close()


def test_a_backlogged_webhook_is_not_taken_for_a_lost_signal(env, r):
    """A long backlog outlives the signal timeout: its webhooks are not in ``leased``, so the
    sweeper never signals them past the backlog (which would undo the turns)."""
    container = _container(env, COMPLIANCE_FAIR_QUEUE_DEPTH="1",
                           COMPLIANCE_DELIVERY_SIGNAL_TIMEOUT="3")
    for i in range(5):
        container.submitter.submit(_env(f"a{i}", "a"))
    later = time.time() + 3600
    swept = container.schedule.sweep(now=later, signal_until=later + 3, limit=500)
    assert swept.ids == []  # the one listed signal is still on the list: not lost either
    assert container.schedule.backlogged() == 4 and r.llen(QUEUE) == 1
    container.close()


def _received_ids(receiver, path: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [q.headers["webhook-id"] for q in receiver.received(path)]


def test_one_tenants_flood_does_not_hold_up_another_tenants_webhook(env, receiver,
                                                                      start_worker):
    """Tenant A queues 1,500 webhooks; once A's deliveries are under way, tenant B sends one.
    The worker holds 8 deliveries at once and the receiver answers A after 20 ms, so A's
    backlog takes at least 3.75 s (1,500 x 20 ms / 8). B's webhook waits behind at most the
    fair depth (8) plus what is in flight (8 in the engine, 1 in the Celery thread): it must
    arrive while at least 1,000 of A's are still undelivered, and within 3 s (the bound:
    about 17 deliveries of 20 ms, 8 at a time, plus the engine's idle poll and this machine's
    slack). With the backlog off (COMPLIANCE_FAIR_QUEUE_DEPTH=0) B waits behind all of A's."""
    fair = {"COMPLIANCE_FAIR_QUEUE_DEPTH": "8", "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "0",
            "COMPLIANCE_TENANT_ENCRYPTION_KEYS": ENCRYPTION_KEY}
    container = _container(env, **fair)
    tenant_a = container.tenant_store.create("a")[0].tenant_id
    tenant_b = container.tenant_store.create("b")[0].tenant_id
    receiver.default = Reply(200, delay=0.02)
    flood = 1500
    for i in range(flood):
        container.submitter.submit(_env(f"wh_a{i:05d}", tenant_a, receiver.url("/a")))
    assert container.schedule.backlogged() == flood - 8
    start_worker(kind="deliveries", concurrency=8, extra_env=fair, name="fair")
    wait_until(lambda: len(receiver.received("/a")) >= 50, timeout=60,
               message="A's deliveries did not start")
    sent = time.monotonic()
    container.submitter.submit(_env("wh_b", tenant_b, receiver.url("/b")))
    wait_until(lambda: receiver.received("/b"), timeout=60, interval=0.01,
               message="B's webhook was not delivered")
    latency = time.monotonic() - sent
    a_done = len(receiver.received("/a"))
    print(f"fairness: B delivered {latency:.2f} s after it was sent, with {flood - a_done} of "
          f"A's {flood} still undelivered")
    assert flood - a_done >= 1000, f"B waited behind {a_done} of A's webhooks"
    assert latency < 3.0, f"B waited {latency:.2f} s"
    container.close()


def test_sigkill_while_the_backlog_feeds_the_list_loses_nothing(env, receiver, start_worker, r):
    """Three tenants' webhooks wait in the backlog; the worker is killed (SIGKILL) again and
    again while the backlog feeds the list and deliveries are in flight. Every webhook is
    delivered in the end; what was let out of the backlog is leased, so lost signals come back
    with their lease."""
    durable = {"COMPLIANCE_FAIR_QUEUE_DEPTH": "4", "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "0",
               "COMPLIANCE_DELIVERY_SIGNAL_TIMEOUT": "3",
               "COMPLIANCE_DELIVERY_SWEEP_INTERVAL": "0.2",
               "COMPLIANCE_DELIVERY_TASK_TIME_LIMIT": "5",
               "COMPLIANCE_TENANT_ENCRYPTION_KEYS": ENCRYPTION_KEY}
    container = _container(env, **durable)
    # two named tenants and the default one
    tenants = {"a": container.tenant_store.create("a")[0].tenant_id,
               "b": container.tenant_store.create("b")[0].tenant_id, "c": None}
    receiver.default = Reply(200, delay=0.03)
    ids = [f"wh_{tenant}{i:03d}" for i in range(120) for tenant in ("a", "b", "c")]
    for webhook_id in ids:
        container.submitter.submit(_env(webhook_id, tenants[webhook_id[3]], receiver.url()))
    assert container.schedule.backlogged() == len(ids) - 4
    kills = 0
    for round_ in range(4):
        victim = start_worker(kind="deliveries", concurrency=4, extra_env=durable,
                              name=f"victim{round_}")
        count = len(receiver.received())
        wait_until(lambda: len(receiver.received()) >= count + 15, timeout=60,
                   message="no deliveries")
        assert container.schedule.backlogged() > 0  # killed while the backlog still fed
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        kills += 1
    start_worker(kind="deliveries", concurrency=4, extra_env=durable, name="after")

    def settled() -> bool:
        return all((container.statuses.get(i) or status_record(
            _env(i, None), Status.PENDING, 0)).status is Status.DELIVERED for i in ids)

    wait_until(settled, timeout=180, interval=0.5,
               message="webhooks were lost to SIGKILL while the backlog fed the list")
    sent = collections.Counter(_received_ids(receiver, "/hook"))
    assert not [i for i in ids if sent[i] == 0]
    duplicates = sum(n - 1 for n in sent.values() if n > 1)
    print(f"sigkill x{kills} while the backlog fed the list: {len(ids)} accepted, "
          f"{len(ids)} delivered, 0 lost, {duplicates} duplicates")
    assert container.schedule.backlogged() == 0
    assert all(container.schedule.live(t) == 0 for t in tenants.values())
    container.close()


@pytest.mark.parametrize("rate", ["0", "100"])
def test_at_maxmemory_a_tenants_submission_writes_nothing(env, r, rate):
    """Redis refuses a script's first write at maxmemory, and lets every later one pass once
    any write ran: the tenant's bookkeeping must not run first (the API then answers 503, and
    nothing of the webhook is kept, backlog entry included)."""
    container = _container(env, COMPLIANCE_FAIR_QUEUE_DEPTH="1")
    limits = TenantLimits(cap=10, rate=float(rate), burst=10)
    for i in range(3):
        assert container.ledger.accept(_env(f"wh_{i}", "acme"), time.time(), signal="s",
                                       limits=limits).accepted
    before = (r.zcard(keys.tenant_live_key("acme")), r.zcard(keys.FAIR_BACKLOG),
              r.get(keys.tenant_rate_key("acme")))
    r.config_set("maxmemory", "1")
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            container.ledger.accept(_env("wh_full", "acme"), time.time(), signal="s",
                                    limits=limits)
    finally:
        r.config_set("maxmemory", "0")
    assert not r.exists(keys.status_key("wh_full")) and not r.exists(keys.webhook_key("wh_full"))
    assert (r.zcard(keys.tenant_live_key("acme")), r.zcard(keys.FAIR_BACKLOG),
            r.get(keys.tenant_rate_key("acme"))) == before
    container.close()


def test_backlogged_signals_count_as_queued_for_health_and_the_operator(env, r):
    """The list is short; the backlog behind it is still demand: /health, the queue metric and
    the operator's autoscaler count it (not as in flight)."""
    container = _container(env, COMPLIANCE_FAIR_QUEUE_DEPTH="3")
    for i in range(10):
        container.submitter.submit(_env(f"wh_{i}", "acme" if i % 2 else None))
    assert r.llen(QUEUE) == 3 and container.schedule.backlogged() == 7
    assert container.queue_lengths()[container.settings.delivery_queue_name] == 10
    snap = read_snapshot(r, prefix="compliance-", queue="compliance_webhooks",
                         sample_backlog=False, reset_timeout=60, active_window=60)
    assert (snap.queue_length, snap.in_flight) == (10, 0)
    container.close()


@pytest.mark.asyncio
async def test_the_engines_take_empties_the_list_then_claims_the_backlogs_next(env, r):
    container = _container(env, COMPLIANCE_FAIR_QUEUE_DEPTH="2")
    for i in range(6):
        container.submitter.submit(_env(f"a{i}", "a"))
    container.submitter.submit(_env("b0", "b"))
    assert r.llen(QUEUE) == 2 and container.schedule.backlogged() == 5
    aclient = redis.asyncio.Redis.from_url(container.settings.redis_url, decode_responses=True)
    now = time.time()
    try:
        taken = await container.schedule.take(aclient, count=4, now=now, lease_until=now + 60,
                                              signal_until=now + 300)
    finally:
        await aclient.aclose()
    ids = [webhook_id for webhook_id, claim in taken if claim.state.value == "claimed"]
    # the list first (a0, a1), then the lowest tags: a2 and the newcomer b0 (both 1)
    assert ids[:2] == ["a0", "a1"] and set(ids[2:]) == {"a2", "b0"}
    for webhook_id in ids:  # held by this engine, as a popped signal would be
        assert float(r.zscore(keys.LEASE_INDEX, webhook_id)) == pytest.approx(now + 60)
    assert r.get(keys.CLAIMED_SIGNAL_MARK) is not None
    # the list is topped up to the depth with the next tags; the rest waits
    queued = [json.loads(raw)["headers"]["webhook_id"]
              for raw in r.lrange(QUEUE, 0, -1)]
    assert sorted(queued) == ["a3", "a4"] and container.schedule.backlogged() == 1
    container.close()
