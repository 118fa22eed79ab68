"""The ``compliance`` CLI as users run it: dev mode end to end, and the dlq commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from compliance.localredis import free_port
from compliance.store.dead_letters import DeadLetterStore
from compliance.store.records import Attempt, DeadLetter
from tests.support.services import wait_until

pytestmark = pytest.mark.timeout(180)


def cli(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "compliance.cli.main", *args], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def seed_dead_letters(r, settings, n=3):
    store = DeadLetterStore(r, settings)
    now = time.time()
    for i in range(n):
        store.put(DeadLetter(webhook_id=f"wh_cli{i}", destination=f"http://127.0.0.1:9/{'ab'[i % 2]}",
                             event="report.completed", payload={"i": i},
                             attempts=[Attempt(at=now, status_code=500, error_type="http_5xx")],
                             error_type="http_5xx" if i % 2 == 0 else "timeout", error="boom",
                             created_at=now - 100, failed_at=now - 100 + i))
    return store


def test_dlq_list_show_replay(env, r, settings):
    seed_dead_letters(r, settings)
    listed = cli(env, "dlq", "list", "--json")
    assert [json.loads(line)["webhook_id"] for line in listed.stdout.splitlines()] == \
        ["wh_cli2", "wh_cli1", "wh_cli0"]
    filtered = cli(env, "dlq", "list", "--error-type", "timeout", "--json").stdout.splitlines()
    assert [json.loads(line)["webhook_id"] for line in filtered] == ["wh_cli1"]
    shown = json.loads(cli(env, "dlq", "show", "wh_cli0").stdout)
    assert shown["payload"] == {"i": 0}
    missing = cli(env, "dlq", "show", "wh_nope", check=False)
    assert missing.returncode != 0 and "no dead letter" in missing.stderr
    dry = cli(env, "dlq", "replay", "--error-type", "http_5xx", "--dry-run")
    assert json.loads(dry.stdout.splitlines()[-1])["matched"] == 2
    assert len(r.keys("dead_letter:webhook:*")) == 3
    done = cli(env, "dlq", "replay", "--error-type", "http_5xx", "--older-than", "1m", "--rate", "50")
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary == {"matched": 2, "replayed": 2, "skipped": 0, "failed": 0, "dry_run": False}
    assert sorted(r.keys("dead_letter:webhook:*")) == ["dead_letter:webhook:wh_cli1"]
    assert r.llen("compliance-compliance_webhooks") == 2
    assert json.loads(r.get("webhook_status:wh_cli0"))["status"] == "pending"


def test_cli_errors_are_clear(env):
    bad = cli(env, "dlq", "replay", "--older-than", "soon", check=False)
    assert bad.returncode == 2 and "duration" in bad.stderr
    broken = cli({**env, "COMPLIANCE_ADMIN_API_KEYS": "changeme"}, "dlq", "list", check=False)
    assert broken.returncode != 0 and "placeholders" in broken.stderr and "Traceback" not in broken.stderr
    # The replay Job and the DLQ tools need no API keys: only the API process asks for them.
    keyless = cli({**env, "COMPLIANCE_ADMIN_API_KEYS": "", "COMPLIANCE_PRODUCER_API_KEYS": ""},
                  "dlq", "list", check=False)
    assert keyless.returncode == 0, keyless.stderr


def test_dev_mode_runs_api_worker_and_its_own_redis(tmp_path, receiver):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    proc = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "dev", "--port", str(port),
                             "--redis-port", "0", "--data-dir", str(tmp_path / "dev")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy():
            try:
                body = httpx.get(f"{base}/health", timeout=3).json()
            except httpx.HTTPError:
                return None
            return body if body["components"]["celery"]["status"] == "up" else None

        body = wait_until(healthy, timeout=90, interval=0.5)
        assert body["components"]["redis"]["status"] == "up"
        assert (tmp_path / "dev" / "redis" / "appendonlydir").exists()  # AOF on
        sent = httpx.post(f"{base}/webhooks", json={"url": receiver.url(), "event": "e", "payload": {}})
        assert sent.status_code == 202  # dev mode: no API key needed, loopback allowed
        receiver.wait_for(1, timeout=60)
        # Tenants work out of the box: dev mode keeps an encryption key of its own.
        made = httpx.post(f"{base}/tenants", json={"name": "trial"})
        assert made.status_code == 201, made.text
        assert (tmp_path / "dev" / "tenant-encryption.key").stat().st_mode & 0o077 == 0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        output = proc.stdout.read().decode()
        assert "DEV MODE" in output and "stopped" in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("args", [("dlq", "list"), ("dlq", "replay", "--dry-run"), ("tenant", "list")])
def test_a_command_that_cannot_reach_redis_says_so_in_one_line(env, args):
    dead = {**env, "COMPLIANCE_REDIS_URL": f"redis://:not-to-be-shown@127.0.0.1:{free_port()}/0"}
    out = cli(dead, *args, check=False)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("Error: Redis is unavailable: ConnectionError")
    assert "Traceback" not in out.stderr and "not-to-be-shown" not in out.stderr + out.stdout
