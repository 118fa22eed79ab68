"""Fair shares: how long tenant B's single webhook takes with and without tenant A's backlog.

Run: `.venv/bin/python bench/fairness.py --a 20000` (`make bench-fairness`). Everything on
loopback, in one run: a redis-server, the aiohttp receiver (`bench/receiver.py`, 0 ms by
default), one `compliance worker --kind deliveries` (512 in flight), webhooks accepted as the API
accepts them (`Submitter.submit`, one script each). First B sends one webhook at a time into an
idle queue (`--probes` times); then A queues `--a` webhooks (spread over 16 destinations, so no
destination cap binds) and, while A's backlog drains, B sends its probes again, one at a time.
B's latency is from its submission to its `delivered` record (the commit after the receiver's
answer). With `--fifo`, the same is measured again with `COMPLIANCE_FAIR_QUEUE_DEPTH=0` (no
backlog: first come, first served), for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deliveries import BASE_ENV, settings_for, start_receiver  # noqa: E402

from compliance.delivery.models import Envelope  # noqa: E402
from compliance.delivery.submit import new_webhook_id  # noqa: E402
from compliance.localredis import LocalRedis  # noqa: E402
from compliance.store.records import Status  # noqa: E402
from compliance.wiring import Container  # noqa: E402

PAYLOAD = {"report_id": "rpt_" + "0" * 32, "note": "x" * 140}  # about 200 bytes of JSON


def probe(container: Container, url: str, tenant: str, timeout: float = 600.0) -> float:
    """Submit one webhook of tenant B; seconds until its record says delivered."""
    webhook_id = new_webhook_id()
    sent = time.time()
    container.submitter.submit(Envelope(webhook_id=webhook_id, url=url, event="bench",
                                        payload=PAYLOAD, tenant=tenant))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = container.statuses.get(webhook_id)
        if record is not None and record.status is Status.DELIVERED:
            return record.updated_at - sent
        time.sleep(0.002)
    raise RuntimeError("B's webhook was not delivered")


def scenario(redis_url: str, ports: list[int], *, a: int, probes: int, depth: int,
             tmp: Path) -> tuple[list[float], list[float], list[int], float]:
    """(B alone, B behind A's backlog, A's webhooks undelivered at each probe, A's rate/s)."""
    env = {**os.environ, **BASE_ENV, "COMPLIANCE_REDIS_URL": redis_url,
           "COMPLIANCE_DELIVERY_CONCURRENCY": "512", "COMPLIANCE_REDIS_MAX_CONNECTIONS": "600",
           "COMPLIANCE_FAIR_QUEUE_DEPTH": str(depth),
           "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "0",
           # named tenants sign with their own secrets, kept encrypted with this key
           "COMPLIANCE_TENANT_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=tmp)}
    container = Container(settings_for(env))
    container.redis.flushall()
    tenant_a = container.tenant_store.create("a")[0].tenant_id
    tenant_b = container.tenant_store.create("b")[0].tenant_id
    a_urls = [f"http://127.0.0.1:{port}/hook" for port in ports[:-1]]
    b_url = f"http://127.0.0.1:{ports[-1]}/hook"
    log = (tmp / f"worker-{depth}.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "worker", "--kind",
                               "deliveries", "-c", "512", "--loglevel", "WARNING",
                               f"--hostname=fair{depth}@%h"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe(container, b_url, tenant_b, timeout=120)  # the worker is up and warm
        alone = [probe(container, b_url, tenant_b) for _ in range(probes)]
        for i in range(a):
            container.submitter.submit(Envelope(webhook_id=new_webhook_id(),
                                                url=a_urls[i % len(a_urls)], event="bench",
                                                payload=PAYLOAD, tenant=tenant_a))
        started = time.monotonic()
        behind, left = [], []
        for _ in range(probes):
            behind.append(probe(container, b_url, tenant_b))
            left.append(a - container.statuses.count(Status.DELIVERED) + probes + 1 + len(behind))
        # A's drain rate, for the scale of what B would have waited behind
        while container.statuses.count(Status.DELIVERED) < a + 2 * probes + 1:
            time.sleep(0.1)
        rate = a / (time.monotonic() - started)
        return alone, behind, left, rate
    finally:
        worker.terminate()
        worker.wait(60)
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=int, default=20000, help="tenant A's backlog")
    parser.add_argument("--probes", type=int, default=5, help="B's webhooks, one at a time")
    parser.add_argument("--latency", type=float, default=0.0, help="receiver latency, ms")
    parser.add_argument("--depth", type=int, default=256, help="COMPLIANCE_FAIR_QUEUE_DEPTH")
    parser.add_argument("--fifo", action="store_true", help="also measure with no backlog")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-fair-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    receiver, ports = start_receiver(args.latency, 17)
    rows = []
    try:
        rows.append((f"fair backlog (depth {args.depth})",
                     scenario(redis.url, ports, a=args.a, probes=args.probes, depth=args.depth,
                              tmp=tmp)))
        if args.fifo:
            rows.append(("no backlog (depth 0: FIFO)",
                         scenario(redis.url, ports, a=args.a, probes=args.probes, depth=0,
                                  tmp=tmp)))
    finally:
        receiver.terminate()
        receiver.wait()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nA: {args.a} webhooks queued at once; B: {args.probes} webhooks, one at a time; "
          f"receiver {args.latency:.0f} ms\n")
    print("| mode | B alone: median s (max) | B behind A's backlog: first s | then: median s "
          "(max) | A's webhooks undelivered when B's first was delivered | A's drain rate/s |")
    print("|---|---|---|---|---|---|")
    for name, (alone, behind, left, rate) in rows:
        print(f"| {name} | {statistics.median(alone):.3f} ({max(alone):.3f}) "
              f"| {behind[0]:.3f} | {statistics.median(behind[1:] or behind):.3f} "
              f"({max(behind[1:] or behind):.3f}) | {left[0]} | {rate:.0f} |")


if __name__ == "__main__":
    main()
