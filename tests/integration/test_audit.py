"""The audit trail on a real Redis, real worker processes and a real storage directory: delivery
outcomes and admin actions are chained; a tenant lists its own entries only; `compliance audit
verify` names the entry that was edited, deleted or moved, in Redis or in an archived segment."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.api.principal import key_id
from compliance.delivery.models import Envelope
from compliance.delivery.submit import new_webhook_id
from compliance.settings import Settings
from compliance.store import keys
from compliance.store.audit import link_hash
from compliance.store.breakers import BreakerResult
from compliance.store.records import Attempt, DeadLetter
from compliance.wiring import Container
from tests.support.receiver import Receiver, Reply
from tests.support.services import ADMIN_KEY, PRODUCER_KEY, settings_from_env, wait_until

pytestmark = pytest.mark.timeout(180)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compliance.cli.main", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def verify(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    out = cli(env, "audit", "verify")
    return out.returncode, json.loads(out.stdout.splitlines()[-1]), out.stderr


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    services = Container(settings)
    yield services
    services.close()


def entries(r: redis.Redis) -> list[tuple[int, dict[str, str]]]:
    return [(int(i.split("-")[0]), v) for i, v in r.xrange(keys.AUDIT_LOG)]  # type: ignore[union-attr]


def rewrite_log(r: redis.Redis, change: Callable[[int, dict[str, str]], dict[str, str] | None]) -> None:
    """What someone with Redis write access does: the stream rebuilt with one entry changed
    (``change`` returns new fields, or None to drop the entry)."""
    rows = entries(r)
    r.delete(keys.AUDIT_LOG)
    for seq, fields in rows:
        new = change(seq, dict(fields))
        if new is not None:
            r.xadd(keys.AUDIT_LOG, new, id=f"{seq}-0")  # type: ignore[arg-type]


def record_some(container: Container, count: int, tenant: str | None = None) -> None:
    for n in range(count):
        container.audit.record(actor="key_test", action="breaker.reset", tenant=tenant,
                               target=f"https://h{n}.example:443", detail={"n": n})


@pytest.mark.parametrize("engine", ["pump", "threads"])
def test_delivery_outcomes_are_chained_by_a_real_worker(
        engine: str, env: dict[str, str], receiver: Receiver,
        start_worker: Callable[..., Any], r: redis.Redis) -> None:
    from tests.integration.test_tenants import TENANT_ENV

    env.update(TENANT_ENV)  # the worker's too: tenants' webhooks are signed with their secrets
    container = Container(settings_from_env(env))
    t1, _ = container.tenant_store.create("one")
    t2, _ = container.tenant_store.create("two")
    r.delete(keys.AUDIT_LOG, keys.AUDIT_HEAD)  # the trail from here (creating is not audited here)
    receiver.script("/gone", Reply(410))  # a 4xx that is not retried: failed at once
    ok = [Envelope(webhook_id=new_webhook_id(), url=receiver.url("/hook"), event="e", payload={},
                   tenant=tenant, correlation_id=f"corr-{n}")
          for n, tenant in enumerate([t1.tenant_id, t1.tenant_id, None])]
    gone = Envelope(webhook_id=new_webhook_id(), url=receiver.url("/gone"), event="e", payload={},
                    tenant=t2.tenant_id, correlation_id="corr-gone")
    for env_ in [*ok, gone]:
        container.submitter.submit(env_)
    start_worker(extra_env={"COMPLIANCE_DELIVERY_ENGINE": engine,
                            "COMPLIANCE_DELIVERY_CONCURRENCY": "8"})
    wait_until(lambda: container.audit.size() == 4, message="four outcomes audited")
    by_target = {v["target"]: v for _, v in entries(r)}
    for n, env_ in enumerate(ok):
        entry = by_target[env_.webhook_id]
        assert entry["action"] == "delivery.delivered" and entry["actor"] == "system:delivery"
        assert entry["tenant"] == (env_.tenant or "") and entry["cid"] == f"corr-{n}"
        assert json.loads(entry["detail"]) == {"attempts": 1}
    failed = by_target[gone.webhook_id]
    assert failed["action"] == "delivery.failed" and failed["tenant"] == t2.tenant_id
    assert json.loads(failed["detail"]) == {"attempts": 1, "error_type": "http_4xx"}
    code, summary, _ = verify(env)
    assert code == 0 and summary["checked"] == 4 and summary["last_seq"] == 4
    # one chain across processes: each entry carries the link of the one before
    rows = entries(r)
    assert [seq for seq, _ in rows] == [1, 2, 3, 4]
    assert r.hget(keys.AUDIT_HEAD, "seq") == "4"
    container.close()


def test_admin_actions_name_the_key_id_never_the_key(
        env: dict[str, str], settings: Settings, container: Container, r: redis.Redis) -> None:
    now = container.clock()
    for webhook_id, tenant in (("wh_a", "t1"), ("wh_b", "t2"), ("wh_c", None)):
        container.dead_letters.put(DeadLetter(
            webhook_id=webhook_id, destination="https://example.com/h", event="e", payload={},
            attempts=[Attempt(at=now, error_type="http_5xx")], error_type="http_5xx",
            error="boom", created_at=now, failed_at=now, tenant=tenant))
    container.breakers.record("https://example.com:443", BreakerResult.FAILURE, was_probe=False,
                              now=now)
    admin = {"X-API-Key": ADMIN_KEY}
    with TestClient(create_app(settings)) as api:
        assert api.post("/dead-letters/wh_a/replay", headers={
            **admin, "X-Correlation-ID": "corr-replay"}).status_code == 202
        bulk = api.post("/dead-letters/replay", json={"limit": 10}, headers=admin)
        assert bulk.status_code == 200 and bulk.json()["replayed"] == 2
        assert api.post("/circuit-breakers/https://example.com:443/reset",
                        headers=admin).status_code == 200
        assert api.post("/webhook-cleanup?status=delivered", headers=admin).status_code == 200
        # refused or missing: nothing changed, nothing recorded
        assert api.post("/webhook-cleanup", headers=admin).status_code == 422
        assert api.post("/dead-letters/wh_zz/replay", headers=admin).status_code == 404
        assert api.post("/webhook-cleanup?status=delivered",
                        headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
    assert cli(env, "cleanup", "--status", "failed", "--older-than-days", "1",
               "--no-documents").returncode == 0
    rows = [v for _, v in entries(r)]
    admin_id = key_id(ADMIN_KEY)
    seen = [(v["actor"], v["action"], v["tenant"], v["target"]) for v in rows]
    assert sorted(seen[1:3]) == [(admin_id, "dead_letter.replay", "", "wh_c"),
                                 (admin_id, "dead_letter.replay", "t2", "wh_b")]
    assert seen[:1] + seen[3:] == [
        (admin_id, "dead_letter.replay", "t1", "wh_a"),
        (admin_id, "dead_letter.replay_bulk", "", ""),
        (admin_id, "breaker.reset", "", "https://example.com:443"),
        (admin_id, "webhook.cleanup", "", ""),
        ("system:cli", "webhook.cleanup", "", ""),
    ]
    assert rows[0]["cid"] == "corr-replay"
    assert json.loads(rows[3]["detail"])["replayed"] == 2
    assert json.loads(rows[6]["detail"]) == {"deleted": 0, "older_than_days": 1.0,
                                             "status": "failed"}
    dump = json.dumps(rows)
    assert ADMIN_KEY not in dump and PRODUCER_KEY not in dump
    assert verify(env)[0] == 0


def test_tenant_changes_are_audited_and_a_tenant_lists_its_own_entries(
        env: dict[str, str], r: redis.Redis) -> None:
    from tests.integration.test_tenants import TENANT_ENV, new_tenant

    tenv = {**env, **TENANT_ENV}
    settings = settings_from_env(tenv)
    container = Container(settings)
    admin = {"X-API-Key": ADMIN_KEY}
    with TestClient(create_app(settings)) as api:
        a = new_tenant(api, "A")  # 1 tenant.create, 2 tenant.key.issue
        b = new_tenant(api, "B")  # 3, 4
        assert api.post(f"/tenants/{a['id']}/secrets", headers=admin).status_code == 201  # 5
        spare = api.post(f"/tenants/{b['id']}/keys", headers=admin).json()  # 6
        assert api.delete(f"/tenants/{b['id']}/keys/{spare['key_id']}",
                          headers=admin).status_code == 204  # 7
        record_some(container, 2, tenant=None)  # 8, 9: the default tenant's
        record_some(container, 1, tenant=a["id"])  # 10

        def listed(headers: dict[str, str], **params: Any) -> list[int]:
            response = api.get("/audit", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [e["seq"] for e in response.json()["items"]]

        assert listed(admin) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
        assert listed(admin, tenant=a["id"]) == [10, 5, 2, 1]
        assert listed(admin, tenant="default") == [9, 8]
        key_a, key_b = {"X-API-Key": a["key"]}, {"X-API-Key": b["key"]}
        assert listed(key_a) == [10, 5, 2, 1] and listed(key_a, tenant=a["id"]) == [10, 5, 2, 1]
        assert listed(key_b) == [7, 6, 4, 3]
        for other in (b["id"], "default"):
            assert api.get("/audit", params={"tenant": other}, headers=key_a).status_code == 404
        # cursor paging, newest first, through the tenant's own index
        first = api.get("/audit", params={"limit": 2}, headers=key_a).json()
        assert [e["seq"] for e in first["items"]] == [10, 5] and first["next_cursor"] == "5"
        rest = api.get("/audit", params={"limit": 2, "cursor": first["next_cursor"]},
                       headers=key_a).json()
        assert [e["seq"] for e in rest["items"]] == [2, 1] and rest["next_cursor"] is None
        assert listed(key_a, cursor="9" * 18) == [10, 5, 2, 1]
        assert api.get("/audit", params={"cursor": "1"}, headers=key_a).json() == {
            "items": [], "next_cursor": None}
        for bad in ({"cursor": "abc"}, {"cursor": "9" * 20}, {"tenant": "acme"},
                    {"tenant": a["id"] + "0"}, {"cursor": ["x", "5"]}, {"limit": ["1", "2"]}):
            assert api.get("/audit", params=bad, headers=admin).status_code == 422, bad
        # the environment's producer keys read no audit entries (as no dead letters); no key: 401
        assert api.get("/audit", headers={"X-API-Key": PRODUCER_KEY}).status_code == 403
        assert api.get("/audit").status_code == 401
        entry = api.get("/audit", params={"limit": 1, "cursor": "2"}, headers=admin).json()["items"][0]
    assert entry["action"] == "tenant.create" and entry["actor"] == key_id(ADMIN_KEY)
    assert entry["tenant"] == a["id"] and entry["target"] == a["id"]
    rows = entries(r)
    assert [v["action"] for _, v in rows[:7]] == [
        "tenant.create", "tenant.key.issue", "tenant.create", "tenant.key.issue",
        "tenant.secret.rotate", "tenant.key.issue", "tenant.key.revoke"]
    assert json.loads(rows[6][1]["detail"]) == {"key_id": spare["key_id"]}
    dump = json.dumps(rows)
    for secret in (a["key"], a["secret"], b["key"], b["secret"], spare["key"], ADMIN_KEY):
        assert secret not in dump
    # the CLI's tenant changes too, by system:cli
    made = cli(tenv, "tenant", "create", "C", "--json")
    assert made.returncode == 0, made.stderr
    c_id = json.loads(made.stdout)["tenant_id"]
    assert cli(tenv, "tenant", "disable", c_id).returncode == 0
    assert [(v["actor"], v["action"], v["tenant"]) for _, v in entries(r)[-2:]] == [
        ("system:cli", "tenant.create", c_id), ("system:cli", "tenant.disable", c_id)]
    out = cli(tenv, "audit", "list", "--tenant", b["id"])
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [7, 6, 4, 3]
    assert verify(tenv)[0] == 0
    container.close()


def test_verify_names_an_entry_edited_deleted_or_moved_in_redis(
        env: dict[str, str], container: Container, r: redis.Redis) -> None:
    record_some(container, 6)
    assert verify(env)[0] == 0
    original = entries(r)

    def restore() -> None:
        r.delete(keys.AUDIT_LOG)
        for seq, fields in original:
            r.xadd(keys.AUDIT_LOG, fields, id=f"{seq}-0")  # type: ignore[arg-type]

    # edited content: entry 3 names another actor
    rewrite_log(r, lambda seq, f: {**f, "actor": "key_someone_else"} if seq == 3 else f)
    code, summary, stderr = verify(env)
    assert code == 1 and summary["bad_seq"] == 3 and summary["where"] == "redis"
    assert "entry 3" in stderr and "changed" in stderr
    restore()
    # the last entry edited: the head Redis keeps carries its old link
    rewrite_log(r, lambda seq, f: {**f, "target": "x"} if seq == 6 else f)
    code, summary, _ = verify(env)
    assert code == 1 and summary["bad_seq"] == 6
    restore()
    # an entry's prev edited
    rewrite_log(r, lambda seq, f: {**f, "prev": "f" * 40} if seq == 4 else f)
    assert verify(env)[1]["bad_seq"] == 4
    restore()
    # deleted
    r.xdel(keys.AUDIT_LOG, "2-0")
    code, summary, stderr = verify(env)
    assert code == 1 and summary["bad_seq"] == 2 and "missing" in stderr
    restore()
    # the newest deleted (the head still counts it)
    r.xdel(keys.AUDIT_LOG, "6-0")
    assert verify(env)[1]["bad_seq"] == 6
    restore()
    # reordered: entries 4 and 5 swap places
    rewrite_log(r, lambda seq, f: dict(original[{4: 4, 5: 3}.get(seq, seq - 1)][1]))
    code, summary, _ = verify(env)
    assert code == 1 and summary["bad_seq"] in (4, 5)
    restore()
    assert verify(env)[0] == 0


def test_archived_segments_carry_the_chain_and_verify_reads_them(
        env: dict[str, str], container: Container, r: redis.Redis, tmp_path: Path) -> None:
    env = {**env, "COMPLIANCE_AUDIT_SEGMENT_ENTRIES": "100"}
    record_some(container, 250, tenant="t1")
    out = cli(env, "audit", "archive", "--older-than", "0")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["archived"] == 250 and result["segments_written"] == 3
    seg_dir = tmp_path / "reports" / "audit" / "segments"
    names = sorted(p.name for p in seg_dir.iterdir())
    assert names == ["000000000001-000000000100.jsonl.gz", "000000000101-000000000200.jsonl.gz",
                     "000000000201-000000000250.jsonl.gz"]
    # Redis holds only what came after: the log and the tenant's index are trimmed
    assert container.audit.size() == 0 and r.xlen(keys.AUDIT_TENANT_INDEX + "t1") == 0
    record_some(container, 5, tenant="t1")
    code, summary, _ = verify(env)
    assert code == 0 and summary["checked"] == 255 and summary["segments"] == 3
    first_in_redis = entries(r)[0]
    assert first_in_redis[0] == 251
    last_archived = json.loads(gzip.decompress((seg_dir / names[2]).read_bytes()).splitlines()[-1])
    assert first_in_redis[1]["prev"] != "0" * 40  # the chain goes on from the last segment
    # listing still works on what Redis keeps
    assert [e.seq for e in container.audit.page(tenant="t1", every_tenant=False, limit=10).items] \
        == [255, 254, 253, 252, 251]
    assert last_archived["seq"] == 250

    def edit_segment(name: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> bytes:
        path = seg_dir / name
        before = path.read_bytes()
        lines = [json.loads(x) for x in gzip.decompress(before).splitlines()]
        path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in change(lines)).encode()))
        return before

    # one entry of the middle segment edited
    saved = edit_segment(names[1], lambda ls: [{**x, "actor": "key_forged"} if x["seq"] == 150
                                               else x for x in ls])
    code, summary, stderr = verify(env)
    assert code == 1 and summary["bad_seq"] == 150
    assert summary["where"] == f"audit/segments/{names[1]}" and "entry 150" in stderr
    (seg_dir / names[1]).write_bytes(saved)
    # one entry of the first segment deleted
    saved = edit_segment(names[0], lambda ls: [x for x in ls if x["seq"] != 42])
    code, summary, _ = verify(env)
    assert code == 1 and summary["bad_seq"] == 42 and summary["where"].endswith(names[0])
    (seg_dir / names[0]).write_bytes(saved)
    # the last segment deleted whole: the gap between the segments and Redis shows
    saved = (seg_dir / names[2]).read_bytes()
    (seg_dir / names[2]).unlink()
    code, summary, stderr = verify(env)
    assert code == 1 and summary["bad_seq"] == 201 and "201 to 250" in stderr
    (seg_dir / names[2]).write_bytes(saved)
    assert verify(env)[0] == 0


def test_an_anchor_catches_a_rewrite_that_recomputed_every_link(
        env: dict[str, str], container: Container, r: redis.Redis) -> None:
    record_some(container, 5)
    # an archive pass with nothing old enough still anchors the chain's end in storage
    out = cli(env, "audit", "archive", "--older-than", "7d")
    assert out.returncode == 0 and json.loads(out.stdout)["anchor"] == "audit/anchors/000000000005.json"
    record_some(container, 2)

    # a forger with Redis write access: entry 2 changed, every link after it and the head redone
    def forge(seq: int, fields: dict[str, str]) -> dict[str, str]:
        return {**fields, "actor": "key_forged"} if seq == 2 else fields

    rows = [(seq, forge(seq, f)) for seq, f in entries(r)]
    prev = "0" * 40
    forged = []
    from compliance.store.audit import AuditEntry  # the verifier's own hashing, reused by the forger

    for seq, fields in rows:
        relinked = {**fields, "prev": prev}
        forged.append((seq, relinked))
        prev = AuditEntry.from_stream(f"{seq}-0", relinked).link()
    r.delete(keys.AUDIT_LOG)
    for seq, fields in forged:
        r.xadd(keys.AUDIT_LOG, fields, id=f"{seq}-0")  # type: ignore[arg-type]
    r.hset(keys.AUDIT_HEAD, "hash", prev)
    code, summary, stderr = verify(env)
    assert code == 1 and summary["bad_seq"] == 5 and "anchor" in stderr
    # an anchor kept elsewhere (a log line) is checked the same way
    assert link_hash("0" * 40, 1, "x") != link_hash("0" * 40, 1, "y")
    out = cli(env, "audit", "verify", "--anchor", f"1:{'0' * 40}")
    assert out.returncode == 1 and '"bad_seq": 1' in out.stdout
    assert cli(env, "audit", "verify", "--anchor", "nonsense").returncode == 2


def test_cleanup_archives_what_is_older_than_the_setting(
        env: dict[str, str], container: Container, tmp_path: Path) -> None:
    record_some(container, 3)
    kept = cli({**env, "COMPLIANCE_AUDIT_REDIS_SECONDS": "3600"}, "cleanup", "--no-documents")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout.splitlines()[-1])["audit"]["archived"] == 0
    assert container.audit.size() == 3
    later = container.clock() + 7200  # an hour and more on: they are old enough now
    from compliance.reports import audit_archive
    from compliance.reports.storage.filesystem import FilesystemStorage

    storage = FilesystemStorage(tmp_path / "reports")
    result = audit_archive.archive(container.audit, storage, before=later - 3600,
                                   segment_entries=100)
    assert result.archived == 3 and container.audit.size() == 0
    assert audit_archive.verify(container.audit, storage).ok


def test_a_batch_of_outcomes_is_one_call_in_order(
        env: dict[str, str], container: Container, r: redis.Redis) -> None:
    from compliance.store.audit import AuditEvent

    record_some(container, 1, tenant="t2")
    events = [AuditEvent(actor="system:delivery", action="delivery.delivered", at=container.clock(),
                         tenant=tenant, target=f"wh_{n}") for n, tenant in enumerate(["t1", None, "t1"])]
    before = int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))  # type: ignore[union-attr]
    pipe = r.pipeline(transaction=True)
    container.ledger.open_batch(pipe)
    container.ledger.close_batch(pipe)  # nothing collected: nothing queued
    assert len(pipe.command_stack) == 0
    container.audit.append_on(pipe, events)
    pipe.execute()
    after = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])  # type: ignore[index]
    assert after - before == 1
    assert [(seq, v["target"], v["tenant"]) for seq, v in entries(r)[1:]] == [
        (2, "wh_0", "t1"), (3, "wh_1", ""), (4, "wh_2", "t1")]
    assert [e.seq for e in container.audit.page(tenant="t1", every_tenant=False, limit=5).items] == [4, 2]
    # an outcome on a caller's pipeline not opened for a batch appends on its own, by EVALSHA
    # (beside the outcome's own script call: the final record and the schedule's cleanup)
    env_ = Envelope(webhook_id="wh_own", url="https://example.com/h", event="e", payload={},
                    tenant="t1", attempts=1)
    pipe = r.pipeline(transaction=True)
    container.ledger.delivered(env_, container.clock(), pipe=pipe)
    pipe.execute()
    assert entries(r)[-1][1]["target"] == "wh_own"
    assert int(r.info("commandstats")["cmdstat_evalsha"]["calls"]) == after + 2  # type: ignore[index]
    assert verify(env)[0] == 0


def test_console_actions_are_recorded_with_the_signed_in_key_id(
        env: dict[str, str], settings: Settings, container: Container, r: redis.Redis) -> None:
    from tests.integration.test_console_service import csrf_of, signed_in

    now = container.clock()
    container.dead_letters.put(DeadLetter(
        webhook_id="wh_console", destination="https://example.com/h", event="e", payload={},
        attempts=[Attempt(at=now, error_type="http_5xx")], error_type="http_5xx", error="boom",
        created_at=now, failed_at=now, tenant="t1"))
    container.breakers.record("https://example.com:443", BreakerResult.FAILURE, was_probe=False,
                              now=now)
    client = signed_in(settings)
    try:
        assert client.post("/console/dead-letters/wh_console/replay",
                           data={"csrf": csrf_of(client)}).status_code == 200
        assert client.post("/console/breakers/reset", data={
            "csrf": csrf_of(client), "name": "https://example.com:443"}).status_code == 200
        assert client.post("/console/cleanup", data={
            "csrf": csrf_of(client), "status": "failed", "older_than_days": "2"}).status_code == 200
    finally:
        client.__exit__(None, None, None)
    admin_id = key_id(ADMIN_KEY)
    assert [(v["actor"], v["action"], v["tenant"], v["target"]) for _, v in entries(r)] == [
        (admin_id, "dead_letter.replay", "t1", "wh_console"),
        (admin_id, "breaker.reset", "", "https://example.com:443"),
        (admin_id, "webhook.cleanup", "", ""),
    ]
    assert verify(env)[0] == 0


def test_one_archive_pass_at_a_time_and_verify_waits_for_it(
        env: dict[str, str], container: Container, r: redis.Redis) -> None:
    record_some(container, 3)
    r.set(keys.AUDIT_ARCHIVE_LOCK, "another-pass", ex=60)
    out = cli(env, "audit", "archive", "--older-than", "0")
    assert out.returncode == 0 and json.loads(out.stdout)["skipped"]
    assert container.audit.size() == 3
    out = cli(env, "audit", "verify")
    assert out.returncode == 2 and "archive pass is running" in out.stderr
    r.delete(keys.AUDIT_ARCHIVE_LOCK)
    assert verify(env)[0] == 0 and r.get(keys.AUDIT_ARCHIVE_LOCK) is None


def test_a_duration_that_is_not_a_finite_number_is_a_cli_error(
        env: dict[str, str], container: Container) -> None:
    # "nan" parsed as a float: no entry is "newer" than NaN, so the pass archived every entry,
    # the ones written a moment ago too.
    record_some(container, 3)
    for bad in ("nan", "NaN", "inf", "1e400d"):
        out = cli(env, "audit", "archive", "--older-than", bad)
        assert out.returncode == 2, (bad, out.stdout, out.stderr)
        assert "duration" in out.stderr and "Traceback" not in out.stderr
    assert container.audit.size() == 3


def test_a_head_deleted_or_rewound_behind_the_entries_is_found(
        env: dict[str, str], container: Container, r: redis.Redis) -> None:
    # verify walked Redis up to the head's sequence number: with the head gone (or set back),
    # it skipped every entry after it and called an edited chain intact.
    record_some(container, 5)
    assert verify(env)[0] == 0
    head = r.hgetall(keys.AUDIT_HEAD)
    r.hset(keys.AUDIT_HEAD, "seq", "2")  # set back behind entries 3 to 5
    code, summary, err = verify(env)
    assert code == 1 and summary["bad_seq"] == 3 and "head" in summary["reason"], (summary, err)
    r.hset(keys.AUDIT_HEAD, mapping=head)
    assert verify(env)[0] == 0
    rewrite_log(r, lambda seq, f: {**f, "actor": "key_forged"} if seq == 3 else f)
    r.delete(keys.AUDIT_HEAD)
    code, summary, err = verify(env)
    assert code == 1 and summary["where"] == "redis" and summary["bad_seq"] == 3, (summary, err)
