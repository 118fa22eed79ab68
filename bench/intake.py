"""Accepting work: `POST /webhooks` against a bare FastAPI endpoint that does one LPUSH.

Run: `.venv/bin/python bench/intake.py` (`make bench-intake`). Both run as real uvicorn servers
(one process each) on the same Redis; 32 client threads post for a fixed time to each in turn.
Ours does the full path: key check, body and JSON-depth checks, SSRF check of the URL, the status
record, envelope and lease in one transaction, and the queue signal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.localredis import LocalRedis, free_port  # noqa: E402

BARE_APP = '''
import os
import redis
from fastapi import FastAPI, Request

r = redis.Redis.from_url(os.environ["COMPLIANCE_REDIS_URL"])
app = FastAPI()


@app.post("/webhooks", status_code=202)
async def accept(request: Request) -> dict:
    r.lpush("bare-queue", await request.body())
    return {"ok": True}
'''
KEY = "bench-producer-key-0123456789"
BODY = {"url": "http://127.0.0.1:9/hook", "event": "bench", "payload": {"note": "x" * 150}}


def serve(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server on {port} did not start")


def load(port: int, seconds: float, threads: int) -> float:
    """Requests per second answered 202 by ``threads`` clients posting for ``seconds``."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def client(i: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}) as c:
            while time.monotonic() < stop:
                if c.post("/webhooks", json=BODY).status_code == 202:
                    counts[i] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-intake-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    (tmp / "bare_app.py").write_text(BARE_APP)
    env = {**os.environ, "COMPLIANCE_REDIS_URL": redis.url, "COMPLIANCE_ADMIN_API_KEYS": KEY + "-admin",
           "COMPLIANCE_PRODUCER_API_KEYS": KEY, "COMPLIANCE_ALLOW_LOOPBACK_TARGETS": "true",
           "COMPLIANCE_ALLOWED_PORTS": "", "COMPLIANCE_API_DOCS": "true", "COMPLIANCE_LOG_LEVEL": "WARNING",
           "COMPLIANCE_MAX_QUEUE_LENGTH": "10000000", "COMPLIANCE_TENANT_MAX_LIVE_WEBHOOKS": "0",
           "PYTHONPATH": str(tmp)}
    ours_port, bare_port = free_port(), free_port()
    servers = [
        serve([sys.executable, "-m", "compliance.cli.main", "api", "--host", "127.0.0.1",
               "--port", str(ours_port)], env, ours_port),
        serve([sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1",
               "--port", str(bare_port), "--log-level", "warning"], env, bare_port),
    ]
    try:
        ours = load(ours_port, args.seconds, args.threads)
        bare = load(bare_port, args.seconds, args.threads)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        redis.stop()
    print("\n| client threads | POST /webhooks (ours)/s | bare FastAPI + LPUSH/s | ours / bare |")
    print("|---|---|---|---|")
    print(f"| {args.threads} | {ours:.0f} | {bare:.0f} | {ours / bare:.2f} |")


if __name__ == "__main__":
    main()
