"""Real processes for tests: redis-server, Celery workers, settings for fast limits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import redis

from compliance.localredis import LocalRedis
from compliance.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789"
PRODUCER_KEY = "test-producer-key-0123456789"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_2 = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="

# Every limit shortened together, so the broker visibility timeout still covers them.
FAST_ENV: dict[str, str] = {
    "COMPLIANCE_ADMIN_API_KEYS": ADMIN_KEY,
    "COMPLIANCE_PRODUCER_API_KEYS": PRODUCER_KEY,
    "COMPLIANCE_WEBHOOK_SECRETS": SECRET,
    "COMPLIANCE_ALLOW_LOOPBACK_TARGETS": "true",
    "COMPLIANCE_ALLOWED_PORTS": "",
    "COMPLIANCE_TASK_TIME_LIMIT": "20",
    "COMPLIANCE_TASK_SOFT_TIME_LIMIT": "15",
    "COMPLIANCE_DELIVERY_TASK_TIME_LIMIT": "10",
    "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "30",
    "COMPLIANCE_RETRY_BASE_SECONDS": "0.05",
    "COMPLIANCE_RETRY_MAX_SECONDS": "0.2",
    "COMPLIANCE_RETRY_AFTER_MAX_SECONDS": "3",
    "COMPLIANCE_BREAKER_RESET_TIMEOUT": "2",
    "COMPLIANCE_BREAKER_MAX_DEFERRAL_SECONDS": "60",
    "COMPLIANCE_CONNECT_TIMEOUT": "1",
    "COMPLIANCE_READ_TIMEOUT": "2",
    "COMPLIANCE_WORKER_METRICS_PORT": "0",
    "COMPLIANCE_HEALTH_CACHE_SECONDS": "0.2",
    "COMPLIANCE_HEALTH_CELERY_TIMEOUT": "1.0",
    "COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT": "10",
    "COMPLIANCE_LOG_LEVEL": "INFO",
}


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings exactly as a subprocess with ``env`` would build them."""
    values = {k.removeprefix("COMPLIANCE_").lower(): v for k, v in env.items()
              if k.startswith("COMPLIANCE_")}
    saved = dict(os.environ)
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("COMPLIANCE_")})
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        del values


def start_redis(tmp: Path) -> tuple[str, object]:
    """A Redis for the session: testcontainers when a Docker engine answers, else redis-server."""
    if os.environ.get("COMPLIANCE_TEST_DOCKER", "auto") != "off" and _docker_available():
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7.4-alpine").with_command(
            "redis-server --appendonly yes --maxmemory-policy noeviction")
        container.start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        return f"redis://{host}:{port}/0", container
    server = LocalRedis(data_dir=tmp / "redis").start()
    return server.url, server


def _docker_available() -> bool:
    # No engine to ask: docker's client would leave the socket of its failed connect to the GC,
    # whose ResourceWarning then lands in whichever test runs next.
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    client = None
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False
    finally:
        if client is not None:  # an unclosed socket warns at some later GC, in some other test
            client.close()


class WorkerProcess:
    """A real ``compliance worker`` subprocess."""

    def __init__(self, env: Mapping[str, str], *, kind: str = "all", concurrency: int = 8,
                 log_path: Path, name: str = "w") -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.kind = kind
        self.concurrency = concurrency
        self.log_path = log_path
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compliance.cli.main", "worker", "--kind", self.kind,
             "-c", str(self.concurrency), f"--hostname={self.name}-{self.kind}@%h"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if b"ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail with ``message``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s (last: {last!r})")


def flush(url: str) -> None:
    client = redis.Redis.from_url(url, retry=None)
    client.flushall()
    client.close()


COMPLIANCE = str(Path(sys.executable).with_name("compliance"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """A real ``compliance api`` subprocess (uvicorn) on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.proc = subprocess.Popen(
            [COMPLIANCE, "api", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self) -> ApiServer:
        def live() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_until(live, timeout=30, message="the API did not start")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def raw(self, head: bytes) -> bytes:
        """Send a raw request head; the answer, or b"" when the server reset the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            with contextlib.suppress(OSError):  # refused mid-send: the answer may still be readable
                sock.sendall(head)
            chunks = []
            try:
                while data := sock.recv(65536):
                    chunks.append(data)
            except ConnectionResetError:
                pass
        return b"".join(chunks)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
