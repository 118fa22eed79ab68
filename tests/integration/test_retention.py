"""``compliance cleanup`` (the chart's retention CronJob) on a real Redis and a real directory:
it removes what the rules select and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from compliance.reports.storage.filesystem import FilesystemStorage
from compliance.settings import Settings
from compliance.store import keys
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import Attempt, DeadLetter, Status, WebhookStatus
from compliance.store.statuses import StatusStore

pytestmark = pytest.mark.timeout(120)
DAY = 86400.0


def cleanup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compliance.cli.main", "cleanup", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def summary(out: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.splitlines()[-1]))


def put_status(store: StatusStore, webhook_id: str, status: Status, age_days: float) -> None:
    at = time.time() - age_days * DAY
    store.put(WebhookStatus(webhook_id=webhook_id, destination="https://example.com/h", event="e",
                            status=status, created_at=at, updated_at=at))


def test_cleanup_deletes_records_by_the_api_rule_and_prunes_only_expired_index_entries(
        env: dict[str, str], r: redis.Redis, settings: Settings) -> None:
    statuses = StatusStore(r, settings)
    for status in Status:  # one old and one young record of every status
        put_status(statuses, f"wh_old_{status.value}", status, age_days=3)
        put_status(statuses, f"wh_new_{status.value}", status, age_days=0)
    # index entries whose record has expired (older than their status's TTL): pruned
    r.zadd(keys.status_index(Status.PENDING), {"wh_expired": time.time() - 8 * DAY})
    r.zadd(keys.status_index(Status.RETRYING), {"wh_expired_too": time.time() - 8 * DAY})
    dead_letters = DeadLetterStore(r, settings)
    now = time.time()
    dead_letters.put(DeadLetter(webhook_id="wh_dlq", destination="https://example.com/h", event="e",
                                payload={}, attempts=[Attempt(at=now, error_type="http_5xx")],
                                error_type="http_5xx", error="boom", created_at=now, failed_at=now))
    r.zadd(keys.DEAD_LETTER_INDEX, {"wh_dlq_expired": now - 31 * DAY})

    first = summary(cleanup(env, "--status", "failed", "--older-than-days", "1", "--no-documents"))
    # pruned: the two expired entries, and wh_old_delivered from the delivered index (an entry
    # older than its status's TTL: a real record that old would be gone)
    assert first["statuses_deleted"] == 1 and first["status_index_pruned"] == 3
    assert first["dead_letter_index_pruned"] == 1 and first["documents_deleted"] == {}
    left = sorted(k.removeprefix("webhook_status:") for k in r.scan_iter("webhook_status:*"))
    assert left == sorted({f"wh_{age}_{s.value}" for s in Status for age in ("old", "new")}
                          - {"wh_old_failed"})
    assert r.zscore(keys.status_index(Status.PENDING), "wh_expired") is None
    assert r.zscore(keys.status_index(Status.RETRYING), "wh_expired_too") is None
    assert r.zscore(keys.status_index(Status.PENDING), "wh_old_pending") is not None
    assert r.zscore(keys.status_index(Status.FAILED), "wh_new_failed") is not None
    assert r.exists(keys.dead_letter_key("wh_dlq")) and dead_letters.size() == 1

    # every status, by age only: the young records of every status stay (wh_old_delivered is no
    # longer indexed, so cleanup by index cannot find it: its TTL removes it)
    second = summary(cleanup(env, "--older-than-days", "2", "--no-documents"))
    assert second["statuses_deleted"] == len(Status) - 2
    r.delete("webhook_status:wh_old_delivered")
    left = sorted(k.removeprefix("webhook_status:") for k in r.scan_iter("webhook_status:*"))
    assert left == sorted(f"wh_new_{s.value}" for s in Status)
    assert statuses.count() == len(Status)

    # no rule: no record goes (only expired index entries would)
    assert summary(cleanup(env, "--no-documents"))["statuses_deleted"] == 0
    assert len(list(r.scan_iter("webhook_status:*"))) == len(Status)


def test_cleanup_expires_documents_and_evidence_past_report_ttl(
        env: dict[str, str], r: redis.Redis, tmp_path: Path) -> None:
    root = Path(env["COMPLIANCE_STORAGE_DIR"])
    storage = FilesystemStorage(root)
    ttl = 3600
    old = time.time() - ttl - 60
    for key in ("reports/rpt_old.json", "evidence/rpt_old.json", "reports/rpt_new.json",
                "evidence/rpt_new.json", "_health/leftover"):
        storage.put(key, b"{}")
    for key in ("reports/rpt_old.json", "evidence/rpt_old.json", "_health/leftover"):
        os.utime(root / key, (old, old))
    out = summary(cleanup({**env, "COMPLIANCE_REPORT_TTL": str(ttl)}))
    assert out["documents_deleted"] == {"reports": 1, "evidence": 1}
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == \
        ["_health/leftover", "evidence/rpt_new.json", "reports/rpt_new.json"]
    # a second run finds nothing more
    assert summary(cleanup({**env, "COMPLIANCE_REPORT_TTL": str(ttl)}))["documents_deleted"] == \
        {"reports": 0, "evidence": 0}


def test_cleanup_refuses_bad_input_and_an_unreachable_redis_clearly(env: dict[str, str]) -> None:
    bad = cleanup(env, "--status", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    negative = cleanup(env, "--older-than-days", "-1")
    assert negative.returncode == 2 and "Traceback" not in negative.stderr
    down = cleanup({**env, "COMPLIANCE_REDIS_URL": "redis://:hunter2secret@127.0.0.1:1/0"})
    assert down.returncode == 1 and "Redis is unavailable" in down.stderr
    assert "Traceback" not in down.stderr and "hunter2secret" not in down.stderr
