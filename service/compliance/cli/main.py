"""``compliance``: one CLI that starts every process (api, worker, dev) and operates the DLQ."""

from __future__ import annotations

import os
from pathlib import Path

import click
import redis

from compliance.cli.audit import audit
from compliance.cli.cleanup import cleanup
from compliance.cli.dev import dev
from compliance.cli.dlq import dlq
from compliance.cli.metrics_dir import ensure_multiproc_dir
from compliance.cli.operator import operator
from compliance.cli.receiver import receiver
from compliance.cli.report import report
from compliance.cli.tenant import tenant
from compliance.settings import Settings
from compliance.worker.liveness import file_is_fresh

WORKER_KINDS = {
    # kind: (pool, queues from settings attribute names)
    "reports": ("prefork", ("queue_name",)),
    "deliveries": ("threads", ("delivery_queue_name",)),
    "all": ("threads", ("queue_name", "delivery_queue_name")),
}


class Commands(click.Group):
    """The command group: a command that cannot reach Redis ends with one clear line and exit
    code 1, not a traceback (a command that means something else by it catches it first)."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the chosen command."""
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:
            raise click.ClickException(
                f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compliance-reporting")
def cli() -> None:
    """Compliance reporting service: API, workers, dev mode and DLQ tools."""


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="uvicorn worker processes.")
def api(host: str, port: int, workers: int) -> None:
    """Run the HTTP API (uvicorn, app factory)."""
    import uvicorn  # only this command serves HTTP

    settings = Settings()
    problems = settings.api_problems()  # fail fast with a clear message on bad configuration
    if problems:
        raise click.ClickException("; ".join(problems))
    if workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        ensure_multiproc_dir()
    from compliance.api import server

    # httptools with a bounded request head (431): uvicorn's own takes heads of any size.
    uvicorn.run("compliance.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_config=None, proxy_headers=True, timeout_graceful_shutdown=20,
                http=server.PROTOCOL, h11_max_incomplete_event_size=settings.max_header_bytes)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--kind", type=click.Choice(sorted(WORKER_KINDS)), default="all", show_default=True,
              help="reports: prefork pool on the report queue; deliveries: thread pool on the "
                   "webhook queue; all: both queues in one thread pool (dev).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=None,
              help="Pool size (default: worker_concurrency or delivery_concurrency).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def worker(kind: str, concurrency: int | None, loglevel: str, extra: tuple[str, ...]) -> None:
    """Run a Celery worker (SIGTERM: soft shutdown, then unfinished tasks are requeued)."""
    # Celery takes the soft-shutdown path on SIGTERM only when SIGTERM is remapped to SIGQUIT.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    ensure_multiproc_dir()
    from compliance.worker.celery_app import app

    pool, queue_attrs = WORKER_KINDS[kind]
    settings = app.settings
    queues = ",".join(getattr(settings, attr) for attr in queue_attrs)
    if concurrency is None:
        concurrency = settings.worker_concurrency if kind == "reports" else settings.delivery_concurrency
    if kind in ("deliveries", "all") and settings.delivery_engine == "pump":
        # The asyncio engine carries all `concurrency` deliveries; one Celery thread stays on
        # the queue (Celery's status, inspect and purge see a consumer) and hands the engine
        # what it pops. (In `all`, the dev mode, that thread also runs reports.)
        app.conf.compliance_pump_in_flight = concurrency
        # A delivery worker's Celery thread stays with each webhook it hands over until the
        # engine is done with it; in `all` that thread runs reports too, so it does not wait.
        app.conf.compliance_hold_handed = kind == "deliveries"
        concurrency = 1
    app.worker_main([
        "worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--queues={queues}",
        f"--loglevel={loglevel}", f"--hostname={kind}@%h", "--without-gossip", "--without-mingle",
        *extra,
    ])


@cli.command("worker-alive")
@click.option("--file", "path", type=click.Path(path_type=Path), default=None,
              help="Heartbeat file (default: COMPLIANCE_WORKER_HEARTBEAT_FILE).")
@click.option("--max-age", type=click.FloatRange(min=1), default=None,
              help="Seconds (default: COMPLIANCE_WORKER_LIVENESS_SECONDS).")
def worker_alive(path: Path | None, max_age: float | None) -> None:
    """Liveness probe of a worker: exit 0 while its heartbeat file is fresh, 1 otherwise."""
    settings = Settings()
    path = path or settings.worker_heartbeat_file
    max_age = max_age or settings.worker_liveness_seconds
    if not file_is_fresh(path, max_age=max_age):
        click.echo(f"worker not alive: {path} is missing or older than {max_age:.0f} s", err=True)
        raise SystemExit(1)
    click.echo("alive")


cli.add_command(audit)
cli.add_command(cleanup)
cli.add_command(dev)
cli.add_command(dlq)
cli.add_command(operator)
cli.add_command(report)
cli.add_command(receiver)
cli.add_command(tenant)


if __name__ == "__main__":  # pragma: no cover
    cli()
