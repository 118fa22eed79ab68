"""What `COMPLIANCE_REDIS_WAIT_REPLICAS=1` costs the API: POST /webhooks with and without the wait.

Run: `.venv/bin/python bench/replica_wait.py` (`make bench-replica-wait`). A primary and one
replica (real redis-servers on loopback, AOF everysec), the real API (`compliance api`, one
uvicorn process) started once per setting; one client posting sequentially (latency) and then
16 threads (throughput). On loopback the replica acknowledges within a millisecond or two:
across a network or zones, add that round trip to every 202.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.localredis import LocalRedis, free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake import BODY, KEY, load  # noqa: E402 - the same client load as bench/intake.py


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "api", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"api on {port} did not start")


def latencies(port: int, n: int) -> list[float]:
    """Milliseconds per 202, one request at a time."""
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}) as client:
        for _ in range(n):
            started = time.perf_counter()
            response = client.post("/webhooks", json=BODY)
            assert response.status_code == 202, response.text
            out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-replica-wait-"))
    primary = LocalRedis(data_dir=tmp / "primary").start()
    replica = LocalRedis(data_dir=tmp / "replica",
                         extra_args=("--replicaof", "127.0.0.1", str(primary.port))).start()
    base = {**os.environ, "COMPLIANCE_REDIS_URL": primary.url, "COMPLIANCE_ADMIN_API_KEYS": KEY + "-admin",
            "COMPLIANCE_PRODUCER_API_KEYS": KEY, "COMPLIANCE_ALLOW_LOOPBACK_TARGETS": "true",
            "COMPLIANCE_ALLOWED_PORTS": "", "COMPLIANCE_LOG_LEVEL": "WARNING",
            "COMPLIANCE_MAX_QUEUE_LENGTH": "10000000", "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "0"}
    rows = []
    try:
        for wait in (0, 1):
            port = free_port()
            server = serve({**base, "COMPLIANCE_REDIS_WAIT_REPLICAS": str(wait)}, port)
            try:
                latencies(port, 50)  # warm up
                ms = latencies(port, args.requests)
                rate = load(port, args.seconds, args.threads)
            finally:
                server.terminate()
                server.wait(30)
            rows.append((wait, statistics.median(ms), ms[int(len(ms) * 0.95)], ms[int(len(ms) * 0.99)], rate))
    finally:
        replica.stop()
        primary.stop()
    print("\n| COMPLIANCE_REDIS_WAIT_REPLICAS | p50 ms | p95 ms | p99 ms | 202/s with "
          f"{args.threads} threads |")
    print("|---|---|---|---|---|")
    for wait, p50, p95, p99, rate in rows:
        print(f"| {wait} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
