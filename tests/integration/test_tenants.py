"""Tenants against a real stack: the real app on a real Redis, a real worker process, real
receivers. Two tenants (and the default one): every listing and every by-id route is tried both
ways; webhooks verify with their own tenant's secret only; a rotation keeps a receiver that
verifies with the old secret working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from compliance.api.app import create_app
from compliance.settings import Settings
from tests.reports.test_api import good
from tests.support.receiver import Receiver, Reply
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, SECRET, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(240)

ENCRYPTION_KEY = Fernet.generate_key().decode()
TENANT_ENV = {
    "COMPLIANCE_TENANT_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    "COMPLIANCE_TENANT_KEY_CACHE_SECONDS": "0",  # revocation seen at once (the bound: its own test)
    "COMPLIANCE_TENANT_SECRET_CACHE_SECONDS": "0.5",
}
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def tenant_env(env: dict[str, str]) -> dict[str, str]:
    env.update(TENANT_ENV)
    return env


@pytest.fixture
def tsettings(tenant_env: dict[str, str]) -> Settings:
    return settings_from_env(tenant_env)


@pytest.fixture
def client(tsettings: Settings) -> Iterator[TestClient]:
    """The real app; each request names its key."""
    with TestClient(create_app(tsettings)) as c:
        yield c


def new_tenant(client: TestClient, name: str) -> dict[str, str]:
    made = client.post("/tenants", json={"name": name}, headers=ADMIN)
    assert made.status_code == 201, made.text
    body = made.json()
    key = client.post(f"/tenants/{body['tenant_id']}/keys", headers=ADMIN)
    assert key.status_code == 201, key.text
    return {"id": body["tenant_id"], "secret": body["secret"], "key": key.json()["key"],
            "key_id": key.json()["key_id"]}


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def submit(client: TestClient, key: str, url: str, n: int = 1) -> str:
    answer = client.post("/webhooks", json={"url": url, "event": "report.completed",
                                            "payload": {"n": n}}, headers=as_key(key))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["webhook_id"])


def status(client: TestClient, webhook_id: str) -> dict[str, object]:
    return dict(client.get(f"/webhook-statuses/{webhook_id}", headers=ADMIN).json())


def settled(client: TestClient, webhook_id: str, want: str) -> None:
    wait_until(lambda: status(client, webhook_id).get("status") == want, timeout=60,
               message=f"{webhook_id} never {want}")


def verifies(secret: str, received: object) -> bool:
    try:
        Webhook(secret).verify(received.body, received.headers)  # type: ignore[attr-defined]
    except WebhookVerificationError:
        return False
    return True


def listed_ids(answer: object) -> set[str]:
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    return {item["webhook_id"] for item in answer.json()["items"]}  # type: ignore[attr-defined]


# --- administration ----------------------------------------------------------------------------

def test_tenant_administration_keys_hashed_and_secrets_encrypted(
        client: TestClient, r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="compliance.api.routes.tenants")
    a = new_tenant(client, "Acme")
    logged = [(rec.getMessage(), getattr(rec, "key_id", None), getattr(rec, "by_key_id", None))
              for rec in caplog.records if rec.name == "compliance.api.routes.tenants"]
    assert [m for m, *_ in logged] == ["tenant created", "tenant key issued"]
    assert logged[1][1] == a["key_id"] and logged[1][2] and logged[1][2].startswith("key_")
    assert a["key"] not in caplog.text and a["secret"] not in caplog.text
    listed = client.get("/tenants", headers=ADMIN).json()["items"]
    assert [(t["tenant_id"], t["name"], t["disabled"]) for t in listed] == [(a["id"], "Acme", False)]
    assert [k["key_id"] for k in listed[0]["keys"]] == [a["key_id"]]
    assert len(listed[0]["secrets"]) == 1
    # Neither the key nor the secret is kept in the clear anywhere in Redis.
    dump = " ".join(str(r.dump(k)) for k in r.scan_iter("*"))
    secret_bytes = a["secret"].removeprefix("whsec_")
    assert a["key"] not in dump and secret_bytes not in dump and a["secret"] not in dump
    assert a["key"] not in json.dumps(listed) and a["secret"] not in json.dumps(listed)

    # Only admin keys administer; bad ids are 422, unknown ones 404.
    assert client.get("/tenants", headers=as_key(a["key"])).status_code == 403
    assert client.post("/tenants", json={"name": "x"}, headers=as_key(PRODUCER_KEY)).status_code == 403
    assert client.post("/tenants", json={"name": ""}, headers=ADMIN).status_code == 422
    assert client.post("/tenants", json={"name": 5}, headers=ADMIN).status_code == 422
    assert client.get("/tenants/nope", headers=ADMIN).status_code == 422
    assert client.get("/tenants/ten_0000000000000000", headers=ADMIN).status_code == 404
    assert client.post("/tenants/ten_0000000000000000/keys", headers=ADMIN).status_code == 404
    assert client.delete(f"/tenants/{a['id']}/keys/key_0000000000000000",
                         headers=ADMIN).status_code == 404

    # The key works; disabled, it is refused; enabled again, it works; revoked, it is unknown.
    url = "http://127.0.0.1:9/hook"
    submit(client, a["key"], url)
    assert client.post(f"/tenants/{a['id']}/disable", headers=ADMIN).json()["disabled"] is True
    refused = client.get("/webhook-statuses", headers=as_key(a["key"]))
    assert refused.status_code == 403 and "disabled" in refused.text
    client.post(f"/tenants/{a['id']}/enable", headers=ADMIN)
    assert client.get("/webhook-statuses", headers=as_key(a["key"])).status_code == 200
    assert client.delete(f"/tenants/{a['id']}/keys/{a['key_id']}", headers=ADMIN).status_code == 204
    assert client.get("/webhook-statuses", headers=as_key(a["key"])).status_code == 403

    # Deleting the tenant ends its other keys at once.
    other = client.post(f"/tenants/{a['id']}/keys", headers=ADMIN).json()["key"]
    assert client.get("/webhook-statuses", headers=as_key(other)).status_code == 200
    assert client.delete(f"/tenants/{a['id']}", headers=ADMIN).status_code == 204
    assert client.get("/webhook-statuses", headers=as_key(other)).status_code == 403
    assert client.get("/tenants", headers=ADMIN).json()["items"] == []
    assert client.delete(f"/tenants/{a['id']}", headers=ADMIN).status_code == 404


def test_without_an_encryption_key_tenants_cannot_be_created(env: dict[str, str]) -> None:
    with TestClient(create_app(settings_from_env(env))) as c:
        answer = c.post("/tenants", json={"name": "Acme"}, headers=ADMIN)
    assert answer.status_code == 503 and "TENANT_ENCRYPTION_KEYS" in answer.text


def test_a_revoked_key_is_refused_within_the_cache_bound(tenant_env: dict[str, str]) -> None:
    """Another API process (its own cache) refuses a revoked key within
    tenant_key_cache_seconds; the process that revoked it, at once."""
    settings = settings_from_env({**tenant_env, "COMPLIANCE_TENANT_KEY_CACHE_SECONDS": "1"})
    with TestClient(create_app(settings)) as admin_side, TestClient(create_app(settings)) as other:
        a = new_tenant(admin_side, "Acme")
        assert other.get("/webhook-statuses", headers=as_key(a["key"])).status_code == 200
        admin_side.delete(f"/tenants/{a['id']}/keys/{a['key_id']}", headers=ADMIN)
        assert admin_side.get("/webhook-statuses", headers=as_key(a["key"])).status_code == 403
        revoked_at = time.monotonic()
        wait_until(lambda: other.get("/webhook-statuses",
                                     headers=as_key(a["key"])).status_code == 403,
                   timeout=5, message="revoked key still accepted")
        assert time.monotonic() - revoked_at <= 1.5


# --- isolation ---------------------------------------------------------------------------------

def test_two_tenants_see_and_act_on_their_own_records_only(
        client: TestClient, start_worker: object, r: redis.Redis) -> None:
    rec_a, rec_b = Receiver().start(), Receiver().start()
    try:
        _isolation(client, start_worker, rec_a, rec_b)
    finally:
        rec_a.stop()
        rec_b.stop()


def _isolation(client: TestClient, start_worker: object, rec_a: Receiver, rec_b: Receiver) -> None:
    a, b = new_tenant(client, "A"), new_tenant(client, "B")
    rec_a.script("/gone", Reply(status=410))
    rec_b.script("/gone", Reply(status=410))
    start_worker(concurrency=4)  # type: ignore[operator]
    ok = {"a": submit(client, a["key"], rec_a.url("/hook")),
          "b": submit(client, b["key"], rec_b.url("/hook")),
          "default": submit(client, PRODUCER_KEY, rec_a.url("/default"))}
    dead = {"a": submit(client, a["key"], rec_a.url("/gone")),
            "b": submit(client, b["key"], rec_b.url("/gone"))}
    for webhook_id in ok.values():
        settled(client, webhook_id, "delivered")
    for webhook_id in dead.values():
        settled(client, webhook_id, "failed")

    # Signatures: each tenant's webhook verifies with its own secret, not another's.
    (got_a,) = rec_a.received("/hook")
    (got_b,) = rec_b.received("/hook")
    (got_default,) = rec_a.received("/default")
    assert verifies(a["secret"], got_a) and not verifies(b["secret"], got_a)
    assert not verifies(SECRET, got_a)
    assert verifies(b["secret"], got_b) and not verifies(a["secret"], got_b)
    assert verifies(SECRET, got_default) and not verifies(a["secret"], got_default)

    # Status listings: each key its own; admin all, or one tenant's with ?tenant=.
    everyone = set(ok.values()) | set(dead.values())
    assert listed_ids(client.get("/webhook-statuses", headers=as_key(a["key"]))) == {ok["a"], dead["a"]}
    assert listed_ids(client.get("/webhook-statuses", headers=as_key(b["key"]))) == {ok["b"], dead["b"]}
    assert listed_ids(client.get("/webhook-statuses", headers=as_key(PRODUCER_KEY))) == {ok["default"]}
    assert listed_ids(client.get("/webhook-statuses", headers=ADMIN)) == everyone
    assert listed_ids(client.get(f"/webhook-statuses?tenant={b['id']}", headers=ADMIN)) == {
        ok["b"], dead["b"]}
    # ?tenant= is an admin's filter: another key still sees only its own.
    assert listed_ids(client.get(f"/webhook-statuses?tenant={b['id']}",
                                 headers=as_key(a["key"]))) == {ok["a"], dead["a"]}
    assert listed_ids(client.get("/webhook-statuses?status=failed",
                                 headers=as_key(a["key"]))) == {dead["a"]}
    page = client.get("/webhook-statuses?limit=1", headers=as_key(a["key"])).json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["next_cursor"]
    rest = client.get(f"/webhook-statuses?limit=1&cursor={page['next_cursor']}",
                      headers=as_key(a["key"])).json()
    assert {page["items"][0]["webhook_id"], rest["items"][0]["webhook_id"]} == {ok["a"], dead["a"]}
    assert client.get("/webhook-statuses", headers=as_key(PRODUCER_KEY)).json()["total"] == 1

    # Status by id: another tenant's is 404, both ways; the default tenant's too.
    for mine, theirs, key in ((ok["a"], ok["b"], a["key"]), (ok["b"], ok["a"], b["key"])):
        assert client.get(f"/webhook-statuses/{mine}", headers=as_key(key)).status_code == 200
        assert client.get(f"/webhook-statuses/{theirs}", headers=as_key(key)).status_code == 404
        assert client.get(f"/webhook-statuses/{ok['default']}", headers=as_key(key)).status_code == 404
    assert client.get(f"/webhook-statuses/{ok['a']}", headers=as_key(PRODUCER_KEY)).status_code == 404

    # Dead letters: listing, by id and replay, both ways.
    assert listed_ids(client.get("/dead-letters", headers=as_key(a["key"]))) == {dead["a"]}
    assert listed_ids(client.get("/dead-letters", headers=as_key(b["key"]))) == {dead["b"]}
    assert listed_ids(client.get("/dead-letters", headers=ADMIN)) == set(dead.values())
    assert listed_ids(client.get(f"/dead-letters?tenant={a['id']}", headers=ADMIN)) == {dead["a"]}
    assert client.get("/dead-letters", headers=as_key(PRODUCER_KEY)).status_code == 403
    for mine, theirs, key in ((dead["a"], dead["b"], a["key"]), (dead["b"], dead["a"], b["key"])):
        assert client.get(f"/dead-letters/{mine}", headers=as_key(key)).status_code == 200
        assert client.get(f"/dead-letters/{theirs}", headers=as_key(key)).status_code == 404
        assert client.post(f"/dead-letters/{theirs}/replay", headers=as_key(key)).status_code == 404
    dry = client.post("/dead-letters/replay", json={"dry_run": True}, headers=as_key(a["key"]))
    assert dry.json()["matched"] == 1
    assert client.get("/dead-letters", headers=as_key(a["key"])).json()["total"] == 1
    rec_a.script("/gone", Reply(status=200))
    replayed = client.post(f"/dead-letters/{dead['a']}/replay", headers=as_key(a["key"]))
    assert replayed.status_code == 202, replayed.text
    settled(client, dead["a"], "delivered")
    assert listed_ids(client.get("/dead-letters", headers=as_key(a["key"]))) == set()
    assert listed_ids(client.get("/dead-letters", headers=as_key(b["key"]))) == {dead["b"]}

    # Breakers: a tenant sees those of destinations it sent to; resetting is an admin's.
    origin_a, origin_b = rec_a.url(""), rec_b.url("")
    seen_a = {x["destination"] for x in client.get("/circuit-breakers",
                                                   headers=as_key(a["key"])).json()["items"]}
    seen_b = {x["destination"] for x in client.get("/circuit-breakers",
                                                   headers=as_key(b["key"])).json()["items"]}
    every = {x["destination"] for x in client.get("/circuit-breakers",
                                                  headers=ADMIN).json()["items"]}
    assert seen_a == {origin_a} and seen_b == {origin_b} and every == {origin_a, origin_b}
    assert {x["destination"] for x in client.get(f"/circuit-breakers?tenant={b['id']}",
                                                 headers=ADMIN).json()["items"]} == {origin_b}
    assert client.post(f"/circuit-breakers/{origin_a}/reset", headers=as_key(a["key"])).status_code == 403
    assert client.get("/circuit-breakers", headers=as_key(PRODUCER_KEY)).status_code == 403


def test_reports_are_their_tenants_own(client: TestClient, r: redis.Redis) -> None:
    a, b = new_tenant(client, "A"), new_tenant(client, "B")
    rid = {}
    for name, key in (("a", a["key"]), ("b", b["key"]), ("default", PRODUCER_KEY)):
        answer = client.post("/reports", json=good(webhook_url="http://127.0.0.1:9/hook"),
                             headers=as_key(key))
        assert answer.status_code == 202, answer.text
        rid[name] = answer.json()["report_id"]
    record = json.loads(r.get(f"compliance:report:{rid['a']}") or "{}")
    assert record["tenant"] == a["id"]
    for mine, theirs, key in ((rid["a"], rid["b"], a["key"]), (rid["b"], rid["a"], b["key"])):
        assert client.get(f"/reports/{mine}", headers=as_key(key)).status_code == 200
        for path in (f"/reports/{theirs}", f"/reports/{theirs}/content",
                     f"/reports/{rid['default']}", f"/reports/{rid['default']}/content"):
            answer = client.get(path, headers=as_key(key))
            assert answer.status_code == 404, (path, answer.text)
        # its own, queued (no worker here): 409, not 404
        assert client.get(f"/reports/{mine}/content", headers=as_key(key)).status_code == 409
    for theirs in (rid["a"], rid["b"]):
        assert client.get(f"/reports/{theirs}", headers=as_key(PRODUCER_KEY)).status_code == 404
    assert client.get(f"/reports/{rid['default']}", headers=as_key(PRODUCER_KEY)).status_code == 200
    for any_id in rid.values():
        assert client.get(f"/reports/{any_id}", headers=ADMIN).status_code == 200


# --- signing and rotation ----------------------------------------------------------------------

def test_a_rotation_keeps_a_receiver_verifying_with_the_old_secret_working(
        client: TestClient, start_worker: object, receiver: Receiver) -> None:
    a = new_tenant(client, "A")
    old = a["secret"]
    start_worker(concurrency=4)  # type: ignore[operator]
    sent = 0

    def send_and_get() -> object:
        nonlocal sent
        sent += 1
        submit(client, a["key"], receiver.url("/hook"), n=sent)
        return receiver.wait_for(sent, "/hook")[-1]

    assert verifies(old, send_and_get())
    rotated = client.post(f"/tenants/{a['id']}/secrets", json={"overlap_seconds": 3600},
                          headers=ADMIN)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    # Through the rotation every webhook verifies with the old secret; the new one signs too
    # within tenant_secret_cache_seconds.
    wait_until(lambda: verifies(new, got := send_and_get()) and verifies(old, got), timeout=20,
               message="the new secret never signed beside the old one")
    assert all(verifies(old, got) for got in receiver.received("/hook"))
    listed = client.get(f"/tenants/{a['id']}", headers=ADMIN).json()["secrets"]
    assert [s["expires_at"] is None for s in listed] == [False, True]

    # A rotation with a short overlap retires the old secret once it expires.
    third = client.post(f"/tenants/{a['id']}/secrets", json={"overlap_seconds": 1},
                        headers=ADMIN).json()["secret"]
    wait_until(lambda: (verifies(third, got := send_and_get())
                        and not verifies(old, got) and not verifies(new, got)),
               timeout=20, message="the old secrets never stopped signing")
    assert client.post(f"/tenants/{a['id']}/secrets", json={"overlap_seconds": -1},
                       headers=ADMIN).status_code == 422
    assert client.post("/tenants/ten_0000000000000000/secrets", headers=ADMIN).status_code == 404


# --- CLI ---------------------------------------------------------------------------------------

def test_the_cli_mirrors_the_api(tenant_env: dict[str, str], client: TestClient,
                                 tmp_path: Path) -> None:
    run_env = {**os.environ, **tenant_env}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "compliance.cli.main", "tenant", *args],
                              env=run_env, capture_output=True, text=True, timeout=60)

    made = cli("create", "Acme", "--json")
    assert made.returncode == 0, made.stderr
    tenant = json.loads(made.stdout)
    assert tenant["secret"].startswith("whsec_")
    key = json.loads(cli("key", "create", tenant["tenant_id"], "--json").stdout)
    assert client.get("/webhook-statuses", headers=as_key(key["key"])).status_code == 200
    listed = cli("list").stdout
    assert tenant["tenant_id"] in listed and key["key_id"] in listed and key["key"] not in listed
    rotated = json.loads(cli("secret", "rotate", tenant["tenant_id"], "--overlap", "2h",
                             "--json").stdout)
    assert rotated["expires_at"] == pytest.approx(time.time() + 7200, abs=60)
    assert cli("key", "revoke", tenant["tenant_id"], key["key_id"]).returncode == 0
    assert client.get("/webhook-statuses", headers=as_key(key["key"])).status_code == 403
    assert cli("key", "revoke", tenant["tenant_id"], key["key_id"]).returncode == 1
    bad = cli("delete", "not-a-tenant")
    assert bad.returncode == 2 and "not a tenant id" in bad.stderr
    assert cli("delete", "ten_0000000000000000").returncode == 1
    assert cli("delete", tenant["tenant_id"]).returncode == 0
    assert tenant["tenant_id"] not in cli("list").stdout
    no_key = subprocess.run([sys.executable, "-m", "compliance.cli.main", "tenant", "create", "X"],
                            env={**run_env, "COMPLIANCE_TENANT_ENCRYPTION_KEYS": ""},
                            capture_output=True, text=True, timeout=60)
    assert no_key.returncode == 1 and "TENANT_ENCRYPTION_KEYS" in no_key.stderr
    assert "Traceback" not in no_key.stderr + bad.stderr


# --- console -----------------------------------------------------------------------------------

def test_the_console_shows_a_tenant_its_own_records_read_only(
        client: TestClient, tsettings: Settings, r: redis.Redis) -> None:
    from tests.integration.test_console_service import signed_in

    a, b = new_tenant(client, "A"), new_tenant(client, "B")
    mine = submit(client, a["key"], "http://127.0.0.1:9/mine")
    theirs = submit(client, b["key"], "http://127.0.0.1:9/theirs")
    default = submit(client, PRODUCER_KEY, "http://127.0.0.1:9/default")
    report_b = client.post("/reports", json=good(webhook_url="http://127.0.0.1:9/r"),
                           headers=as_key(b["key"])).json()["report_id"]
    console = signed_in(tsettings, a["key"])
    try:
        home = console.get("/console", follow_redirects=False)
        assert home.status_code == 303 and home.headers["location"].endswith("/console/webhooks")
        listing = console.get("/console/webhooks").text
        assert mine in listing and theirs not in listing and default not in listing
        assert console.get(f"/console/webhooks/{mine}").status_code == 200
        assert console.get(f"/console/webhooks/{theirs}").status_code == 404
        assert console.get(f"/console/webhooks/{default}").status_code == 404
        live = console.get(f"/console/live/statuses?id={mine}&id={theirs}").text
        assert mine in live and "/theirs" not in live
        assert report_b not in console.get("/console/reports").text
        assert console.get(f"/console/reports/{report_b}/download").status_code == 404
        assert console.get("/console/live/overview").status_code == 403
        for admin_page in ("/console/dead-letters", "/console/breakers"):
            assert console.get(admin_page).status_code == 403
        # Revoking the key ends the session.
        client.delete(f"/tenants/{a['id']}/keys/{a['key_id']}", headers=ADMIN)
        assert console.get("/console/webhooks", follow_redirects=False).status_code == 303
    finally:
        console.__exit__(None, None, None)
    # The admin's console still sees every tenant's webhooks.
    admin = signed_in(tsettings)
    try:
        listing = admin.get("/console/webhooks").text
        assert mine in listing and theirs in listing and default in listing
    finally:
        admin.__exit__(None, None, None)


def test_a_path_of_several_routes_allows_all_their_methods(client: TestClient) -> None:
    answer = client.options("/tenants", headers=ADMIN)
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"
    one = client.request("PUT", "/tenants/ten_0000000000000000", headers=ADMIN)
    assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET"


def test_dev_mode_needs_no_key_but_a_tenant_key_still_acts_as_its_tenant(
        tenant_env: dict[str, str]) -> None:
    settings = settings_from_env({**tenant_env, "COMPLIANCE_DEV_MODE": "true"})
    with TestClient(create_app(settings)) as dev:
        a = new_tenant(dev, "A")
        mine = submit(dev, a["key"], "http://127.0.0.1:9/hook")
        anyone = dev.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "event": "e",
                                             "payload": {}}).json()["webhook_id"]
        assert status(dev, mine)["tenant"] == a["id"]
        assert status(dev, anyone)["tenant"] is None
        assert listed_ids(dev.get("/webhook-statuses", headers=as_key(a["key"]))) == {mine}
        assert dev.get(f"/webhook-statuses/{anyone}", headers=as_key(a["key"])).status_code == 404


def test_a_tenants_listing_reads_its_own_index_not_everyones(client: TestClient,
                                                              r: redis.Redis) -> None:
    """A's one webhook is on its first page, however many newer ones B has: the page reads
    A's index (a filtered walk of the global one would give up after 10 * limit + 100)."""
    a, b = new_tenant(client, "A"), new_tenant(client, "B")
    assert client.get("/webhook-statuses", headers=as_key(PRODUCER_KEY)).json() == {
        "items": [], "next_cursor": None, "total": 0}
    oldest = submit(client, PRODUCER_KEY, "http://127.0.0.1:9/default")
    mine = submit(client, a["key"], "http://127.0.0.1:9/a")
    pipe_url = "http://127.0.0.1:9/b"
    for n in range(300):
        submit(client, b["key"], pipe_url, n=n)
    page = client.get("/webhook-statuses?limit=1", headers=as_key(a["key"])).json()
    assert [i["webhook_id"] for i in page["items"]] == [mine] and page["total"] == 1
    assert page["next_cursor"] is None
    assert r.zcard(f"compliance:index:tenant_statuses:{b['id']}:pending") == 300
    # The default tenant's page, by contrast, walks the global index past named tenants'
    # records, a bounded number per page, and says where it stopped.
    default = client.get("/webhook-statuses?limit=1", headers=as_key(PRODUCER_KEY)).json()
    assert default["items"] == [] and default["next_cursor"] and default["total"] == 1
    found: list[str] = []
    cursor = default["next_cursor"]
    while cursor and not found:
        default = client.get(f"/webhook-statuses?limit=1&cursor={cursor}",
                             headers=as_key(PRODUCER_KEY)).json()
        found, cursor = [i["webhook_id"] for i in default["items"]], default["next_cursor"]
    assert found == [oldest]
