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
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.delivery.models import Envelope  # noqa: E402
from compliance.delivery.submit import new_webhook_id  # noqa: E402
from compliance.localredis import LocalRedis, free_port  # noqa: E402
from compliance.settings import Settings  # noqa: E402
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


def start_receiver(latency_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "receiver.py"), str(port), str(latency_ms)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            received(port)
            return proc, port
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


def run_ours(redis_url: str, port: int, n: int, *, pool: str, concurrency: int, tmp: Path,
             processes: int = 1) -> tuple[float, float]:
    """Enqueue n webhooks (as the API does), run the worker(s), time until the receiver has all.

    ``processes`` > 1 runs that many worker processes side by side, as replicas would.
    Returns deliveries per second and the mean number of deliveries in flight at the receiver.
    """
    env = {**os.environ, **BASE_ENV, "COMPLIANCE_REDIS_URL": redis_url,
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=tmp)}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    container = Container(settings)
    container.redis.flushall()
    submitter = container.submitter
    before = received(port)
    for i in range(n):
        submitter.submit(Envelope(webhook_id=new_webhook_id(), url=f"http://127.0.0.1:{port}/hook",
                                  event="bench", payload={"i": i}))
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
        started = time.perf_counter()
        first = received(port)
        overlap: list[int] = []  # deliveries the receiver was answering at once, sampled
        while (now := stats(port))["count"] - before < n:
            overlap.append(now["in_flight"])
            time.sleep(0.02)
        rate = (n - (first - before)) / (time.perf_counter() - started)
        return rate, sum(overlap) / max(len(overlap), 1)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="webhooks per scenario")
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-bench-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    rows = []
    try:
        for latency in (0.0, 200.0):
            receiver, port = start_receiver(latency)
            try:
                n = args.n if latency else args.n * 2
                raw = asyncio.run(raw_loop(port, n, args.in_flight))
                ours, overlap = run_ours(redis.url, port, n, pool="threads", concurrency=args.in_flight,
                                         tmp=tmp)
                two, _ = run_ours(redis.url, port, n, pool="threads", concurrency=args.in_flight // 2,
                                  tmp=tmp, processes=2)
                seed_n = min(n, 200) if latency else n
                seed, _ = run_ours(redis.url, port, seed_n, pool="prefork", concurrency=4, tmp=tmp)
                rows.append((latency, n, raw, ours, two, seed, overlap))
            finally:
                receiver.terminate()
                receiver.wait()
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    half = args.in_flight // 2
    print(f"\n{'latency':>8} {'n':>6} {'raw aiohttp/s':>14} {'ours 1x' + str(args.in_flight) + '/s':>12}"
          f" {'ours 2x' + str(half) + '/s':>12} {'seed prefork4/s':>16} {'ours/raw':>9} {'ours/seed':>10}"
          f" {'2 procs/1':>10} {'in flight':>10}")
    for latency, n, raw, ours, two, seed, overlap in rows:
        print(f"{latency:>6.0f}ms {n:>6} {raw:>14.0f} {ours:>12.0f} {two:>12.0f} {seed:>16.1f}"
              f" {ours / raw:>9.2f} {ours / seed:>10.1f} {two / ours:>10.2f} {overlap:>10.1f}")


if __name__ == "__main__":
    main()
