"""Deliveries per second end to end (enqueue -> worker -> receiver) against a raw async loop.

Run: `make bench` (or `.venv/bin/python bench/deliveries.py --n 1000`). Everything runs on
loopback: a redis-server, an aiohttp receiver with 0 ms and 200 ms latency, our delivery worker
(threads pool, 64 in flight), the seed's prefork pool of 4 for comparison, and a raw aiohttp
client loop with 64 in flight as the ceiling. Figures are printed as ratios measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.delivery.models import Envelope  # noqa: E402
from compliance.delivery.submit import new_webhook_id  # noqa: E402
from compliance.localredis import LocalRedis, free_port  # noqa: E402
from compliance.settings import Settings  # noqa: E402
from compliance.store.records import Status  # noqa: E402
from compliance.wiring import Container  # noqa: E402

BASE_ENV = {
    "COMPLIANCE_DEV_MODE": "true",
    "COMPLIANCE_ALLOW_LOOPBACK_TARGETS": "true",
    "COMPLIANCE_ALLOWED_PORTS": "",
    "COMPLIANCE_WORKER_METRICS_PORT": "0",
    "COMPLIANCE_LOG_LEVEL": "WARNING",
}


def stats(port: int) -> dict[str, int]:
    """The receiver's counters: requests answered, and requests being answered right now."""
    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json())


def received(port: int) -> int:
    return stats(port)["count"]


def start_receiver(latency_ms: float,
                   destinations: int = 1) -> tuple[subprocess.Popen[bytes], list[int]]:
    """The receiver, listening on ``destinations`` ports (the first also serves /stats)."""
    ports = [free_port() for _ in range(destinations)]
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py"),
                             ",".join(map(str, ports)), str(latency_ms)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            received(ports[0])
            return proc, ports
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("receiver did not start")


async def raw_loop(port: int, n: int, in_flight: int) -> float:
    """The ceiling: an aiohttp client posting n bodies with ``in_flight`` concurrent requests."""
    url = f"http://127.0.0.1:{port}/hook"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                async with session.post(url, data=b'{"type":"bench"}') as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return n / (time.perf_counter() - started)


@dataclass
class Run:
    """One scenario's figures."""

    rate: float  # deliveries per second
    in_flight: float  # mean requests the receiver was answering at once
    cpu_ms: float  # worker processes' CPU (user + system) per delivery
    redis_cpu_ms: float  # redis-server's CPU per delivery
    redis_cmds: float  # Redis commands per delivery (INFO commandstats, broker traffic included)
    bytes_per: float  # Redis memory a delivered webhook holds until its status expires


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (the prefork pool), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _redis_counters(client: Any) -> tuple[float, int, int]:
    cpu = client.info("cpu")
    calls = sum(int(v["calls"]) for v in client.info("commandstats").values())
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls,
            int(client.info("memory")["used_memory"]))


def _held_per_webhook(container: Container, n: int) -> float:
    """What each delivered webhook keeps in Redis until its status expires: the memory freed by
    deleting every per-webhook key (status record, index entry, anything left) once all are
    delivered. (A before-and-after ``used_memory`` would also count hash tables that grew and
    allocator slack that a deletion does not give back.)"""
    r = container.redis
    before = int(r.info("memory")["used_memory"])
    for pattern in ("webhook_status:*", "compliance:webhook:*"):
        batch = list(r.scan_iter(pattern, count=1000))
        for i in range(0, len(batch), 1000):
            r.delete(*batch[i:i + 1000])
    r.delete(*[f"compliance:index:statuses:{s}" for s in Status])
    return (before - int(r.info("memory")["used_memory"])) / n


def settings_for(env: dict[str, str]) -> Settings:
    """Settings exactly as a worker started with ``env`` builds them."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_ours(redis_url: str, ports: list[int], n: int, *, pool: str, concurrency: int,
             tmp: Path, processes: int = 1, engine: str = "pump") -> Run:
    """Enqueue n webhooks (as the API does), run the worker(s), time until the receiver has all.

    The webhooks go round the receiver's ports (one destination each, under the default cap of
    requests in flight per destination). ``processes`` > 1 runs that many worker processes side
    by side, as replicas would.
    """
    port = ports[0]
    env = {**os.environ, **BASE_ENV, "COMPLIANCE_REDIS_URL": redis_url,
           "COMPLIANCE_DELIVERY_ENGINE": engine, "COMPLIANCE_DELIVERY_CONCURRENCY": str(concurrency),
           "COMPLIANCE_REDIS_MAX_CONNECTIONS": str(max(200, concurrency + 16)),
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=tmp)}
    container = Container(settings_for(env))
    settings = container.settings
    container.redis.flushall()
    submitter = container.submitter
    before = received(port)
    payload = {"report_id": "rpt_" + "0" * 32, "note": "x" * 140}  # about 200 bytes of JSON
    for i in range(n):
        submitter.submit(Envelope(webhook_id=new_webhook_id(),
                                  url=f"http://127.0.0.1:{ports[i % len(ports)]}/hook",
                                  event="bench", payload=payload))
    kind = "deliveries" if pool == "threads" else "reports"
    queue_arg = [] if pool == "threads" else [f"--queues={settings.delivery_queue_name}"]
    log = (tmp / f"worker-{pool}.log").open("wb")
    workers = [subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "worker", "--kind", kind,
                                 "-c", str(concurrency), "--loglevel", "WARNING", *queue_arg,
                                 f"--hostname={kind}{i}@%h"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
               for i in range(processes)]
    try:
        # start the clock at the first delivery, so worker boot time is not counted
        while received(port) == before:
            if any(worker.poll() is not None for worker in workers):
                raise RuntimeError((tmp / f"worker-{pool}.log").read_text()[-2000:])
            time.sleep(0.01)
        cpu_start = sum(_tree_cpu_seconds(w.pid) for w in workers)
        redis_cpu_start, calls_start, _ = _redis_counters(container.redis)
        started = time.perf_counter()
        first = received(port)
        overlap: list[int] = []  # deliveries the receiver was answering at once, sampled
        while (now := stats(port))["count"] - before < n:
            overlap.append(now["in_flight"])
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        counted = n - (first - before)
        cpu = sum(_tree_cpu_seconds(w.pid) for w in workers) - cpu_start
        # the last outcomes are committed a moment after the receiver answered
        deadline = time.monotonic() + 30
        while container.statuses.count(Status.DELIVERED) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        redis_cpu, calls, _ = _redis_counters(container.redis)
        return Run(rate=counted / elapsed, in_flight=sum(overlap) / max(len(overlap), 1),
                   cpu_ms=cpu * 1000 / counted, redis_cpu_ms=(redis_cpu - redis_cpu_start) * 1000 / counted,
                   redis_cmds=(calls - calls_start) / counted, bytes_per=_held_per_webhook(container, n))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="webhooks per scenario at 200 ms")
    parser.add_argument("--in-flight", type=int, default=512)
    parser.add_argument("--latencies", default="0,200", help="receiver latencies, ms")
    parser.add_argument("--destinations", type=int, default=16,
                        help="receiver ports, each a destination with its own cap")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-bench-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    rows = []
    try:
        for latency in (float(x) for x in args.latencies.split(",")):
            receiver, ports = start_receiver(latency, args.destinations)
            try:
                n = args.n if latency else args.n * 2
                raw = asyncio.run(raw_loop(ports[0], n, args.in_flight))
                ours = run_ours(redis.url, ports, n, pool="threads", concurrency=args.in_flight,
                                tmp=tmp)
                two = run_ours(redis.url, ports, n, pool="threads", concurrency=args.in_flight // 2,
                               tmp=tmp, processes=2)
                threads = run_ours(redis.url, ports, min(n, 1000), pool="threads", concurrency=64,
                                   tmp=tmp, engine="threads")
                seed_n = min(n, 200) if latency else min(n, 1000)
                seed = run_ours(redis.url, ports, seed_n, pool="prefork", concurrency=4, tmp=tmp,
                                engine="threads")
                rows.append((latency, n, raw, ours, two, threads, seed))
            finally:
                receiver.terminate()
                receiver.wait()
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    k = args.in_flight
    print(f"\n| receiver | raw aiohttp ({k} in flight)/s | ours: 1 process, engine {k}/s "
          f"| ours: 2 processes x {k // 2}/s | Celery threads x64 (wave 1)/s | seed prefork 4/s "
          f"| ours / raw | ours / seed |")
    print("|---|---|---|---|---|---|---|---|")
    for latency, _n, raw, ours, two, threads, seed in rows:
        print(f"| {latency:.0f} ms | {raw:.0f} | {ours.rate:.0f} | {two.rate:.0f} | {threads.rate:.0f} "
              f"| {seed.rate:.1f} | {ours.rate / raw:.2f} | {ours.rate / seed.rate:.1f} |")
    print("\n| receiver | scenario | deliveries/s | in flight at receiver | worker CPU-ms/delivery "
          "| Redis CPU-ms/delivery | total CPU-ms/delivery | Redis commands/delivery | Redis bytes/webhook |")
    print("|---|---|---|---|---|---|---|---|---|")
    for latency, _n, _raw, ours, two, threads, seed in rows:
        for name, run in (("ours, 1 process", ours), ("ours, 2 processes", two),
                          ("Celery threads x64", threads), ("seed prefork 4", seed)):
            print(f"| {latency:.0f} ms | {name} | {run.rate:.0f} | {run.in_flight:.1f} | {run.cpu_ms:.2f} "
                  f"| {run.redis_cpu_ms:.2f} | {run.cpu_ms + run.redis_cpu_ms:.2f} | {run.redis_cmds:.1f} "
                  f"| {run.bytes_per:.0f} |")


if __name__ == "__main__":
    main()
