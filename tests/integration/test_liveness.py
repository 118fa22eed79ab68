"""Worker liveness: the heartbeat file a real worker writes, and the probe that reads it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from compliance.worker.liveness import stale_parts
from tests.support.services import wait_until

pytestmark = pytest.mark.timeout(120)


def test_stale_parts_excuse_only_a_consumer_waiting_for_redis():
    ticks = {"consumer": 0.0, "engine": 95.0, "sweeper": 99.0}
    assert stale_parts(ticks, now=100.0, window=10, redis_up=True) == ["consumer"]
    assert stale_parts(ticks, now=100.0, window=10, redis_up=False) == []
    ticks["engine"] = 0.0  # the engine rides out Redis trouble in its own loop: never excused
    assert stale_parts(ticks, now=100.0, window=10, redis_up=False) == ["engine"]


def _probe(env, path, max_age="6"):
    return subprocess.run([sys.executable, "-m", "compliance.cli.main", "worker-alive",
                           "--file", str(path), "--max-age", max_age],
                          env={**env}, capture_output=True, text=True, timeout=60)


def test_a_running_worker_is_alive_and_a_frozen_one_is_not(env, start_worker, tmp_path):
    import os

    beat = tmp_path / "alive"
    extra = {"COMPLIANCE_WORKER_HEARTBEAT_FILE": str(beat), "COMPLIANCE_WORKER_LIVENESS_SECONDS": "6"}
    probe_env = {**os.environ, **env, **extra}
    assert _probe(probe_env, beat).returncode == 1  # nothing written yet: not alive
    worker = start_worker(kind="deliveries", concurrency=4, extra_env=extra, name="beating")
    wait_until(lambda: _probe(probe_env, beat).returncode == 0, timeout=30,
               message="a healthy worker never wrote its heartbeat")
    worker.signal(signal.SIGSTOP)  # a worker that stopped turning (here: all of it)
    try:
        wait_until(lambda: _probe(probe_env, beat).returncode == 1, timeout=30,
                   message="the probe still passed for a frozen worker")
        assert "not alive" in _probe(probe_env, beat).stderr
    finally:
        worker.signal(signal.SIGCONT)
    wait_until(lambda: _probe(probe_env, beat).returncode == 0, timeout=30,
               message="the worker did not come back alive")
