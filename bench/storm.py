"""A storm: many webhooks to a destination answering 503, then its recovery.

Run: `.venv/bin/python bench/storm.py --n 50000` (`make bench-storm`). One delivery worker (the
chart's default process), shortened breaker timings. Reports the worker's RSS and Redis memory
during the storm, how the backlog shows (ready, scheduled, leased), and once the destination
answers 200: the drain time and the most requests the destination saw at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deliveries import BASE_ENV, settings_for, start_receiver, stats

from compliance.delivery.models import Envelope
from compliance.delivery.submit import new_webhook_id
from compliance.localredis import LocalRedis
from compliance.store.records import Status
from compliance.wiring import Container

STORM_ENV = {
    "COMPLIANCE_BREAKER_RESET_TIMEOUT": "5",
    "COMPLIANCE_BREAKER_MAX_DEFERRAL_SECONDS": "3600",
    "COMPLIANCE_RETRY_BASE_SECONDS": "1",
    "COMPLIANCE_RETRY_MAX_SECONDS": "5",
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--storm-seconds", type=float, default=30)
    parser.add_argument("--latency", type=float, default=0,
                        help="the destination's answer time once it recovers, ms (a slow one "
                             "shows the cap: never more than COMPLIANCE_DESTINATION_MAX_IN_FLIGHT "
                             "at once)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-storm-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    receiver, (port,) = start_receiver(args.latency)
    env = {**os.environ, **BASE_ENV, **STORM_ENV, "COMPLIANCE_REDIS_URL": redis.url,
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=tmp)}
    container = Container(settings_for(env))
    settings = container.settings
    httpx.post(f"http://127.0.0.1:{port}/mode?status=503")
    started = time.perf_counter()
    for i in range(args.n):
        container.submitter.submit(Envelope(webhook_id=new_webhook_id(), event="storm",
                                            url=f"http://127.0.0.1:{port}/hook", payload={"i": i}))
    accept_rate = args.n / (time.perf_counter() - started)
    worker = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "worker", "--kind",
                               "deliveries", "--loglevel", "WARNING", "--hostname=storm@%h"],
                              env=env, stdout=(tmp / "worker.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        peak_rss = 0.0
        deadline = time.monotonic() + args.storm_seconds
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, rss_mb(worker.pid))
            time.sleep(0.5)
        counts = container.schedule.counts(time.time())
        ready = container.queue_lengths()[settings.delivery_queue_name]
        memory = int(container.redis.info("memory")["used_memory"])
        hits = stats(port)["count"]
        parked = sum(container.breakers.parked().values())
        print(f"storm: {args.n} webhooks accepted at {accept_rate:.0f}/s; after {args.storm_seconds:.0f} s "
              f"of 503: destination hit {hits} times, backlog ready {ready}, scheduled "
              f"{counts.scheduled} (due now {counts.due_now}), leased {counts.leased}, parked {parked}; "
              f"worker RSS "
              f"peak {peak_rss:.0f} MB; Redis used_memory {memory / 1e6:.1f} MB "
              f"({memory / args.n:.0f} B per webhook)")
        httpx.post(f"http://127.0.0.1:{port}/mode?status=200")
        recovered = time.perf_counter()
        while container.statuses.count(Status.DELIVERED) < args.n:
            peak_rss = max(peak_rss, rss_mb(worker.pid))
            if worker.poll() is not None:
                raise RuntimeError((tmp / "worker.log").read_text()[-2000:])
            time.sleep(0.5)
        drain = time.perf_counter() - recovered
        seen = stats(port)
        failed = container.statuses.count(Status.FAILED)
        print(f"recovery: all {args.n} delivered {drain:.1f} s after the destination answered 200 "
              f"({args.n / drain:.0f}/s); dead-lettered {failed}; most requests at once at the "
              f"destination {seen['peak']} (cap {settings.destination_max_in_flight}); worker RSS "
              f"peak {peak_rss:.0f} MB")
    finally:
        worker.terminate()
        worker.wait(60)
        receiver.terminate()
        receiver.wait()
        container.close()
        redis.stop()


if __name__ == "__main__":
    main()
