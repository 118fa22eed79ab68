"""Worker lifecycle hooks: logging, per-process clients, metrics endpoint, correlation ids, and
the delivery sweeper in every worker that consumes the delivery queue."""

from __future__ import annotations

import logging
import os
from typing import Any

from asgi_correlation_id import correlation_id
from celery import Celery, signals
from prometheus_client import start_http_server

from compliance.observability import metrics
from compliance.observability.logs import configure_logging
from compliance.redis_client import check_eviction_policy, create_redis
from compliance.settings import Settings
from compliance.wiring import forget_process, process_container

log = logging.getLogger(__name__)
HEADER = "correlation_id"
_sweeper_stop: list[Any] = []


def _consumes_deliveries(sender: Any, settings: Settings) -> bool:
    """True for a worker (or its consumer) that reads the delivery queue."""
    app = getattr(sender, "app", None)
    if app is None:
        return False
    consuming = app.amqp.queues.consume_from or app.amqp.queues
    return settings.delivery_queue_name in consuming


def connect(app: Celery) -> None:
    """Attach the hooks for ``app`` (called by the entry module, not on import)."""
    settings: Settings = app.settings  # type: ignore[attr-defined]

    @signals.setup_logging.connect(weak=False)
    def _logging(**_: Any) -> None:
        configure_logging(settings.log_level, service="worker")

    @signals.worker_init.connect(weak=False)
    def _init(sender: Any = None, **_: Any) -> None:
        if _consumes_deliveries(sender, settings):
            problems = settings.signing_problems()
            if problems:
                # Exit non-zero: a supervisor must see a worker that cannot sign as broken.
                log.critical("; ".join(problems))
                raise SystemExit(2)
        warning = check_eviction_policy(create_redis(settings))
        if warning:
            log.warning(warning)
        if settings.worker_metrics_port:
            registry = metrics.process_registry()
            start_http_server(settings.worker_metrics_port, registry=registry)
            log.info("worker metrics listening", extra={"port": settings.worker_metrics_port})

    @signals.worker_process_init.connect(weak=False)
    def _after_fork(**_: Any) -> None:
        forget_process()

    @signals.worker_ready.connect(weak=False)
    def _start_sweeper(sender: Any = None, **_: Any) -> None:
        if _consumes_deliveries(sender, settings):
            _sweeper_stop.append(process_container(settings).sweeper.start())
            log.info("delivery sweeper started",
                     extra={"interval": settings.delivery_sweep_interval})

    @signals.worker_shutting_down.connect(weak=False)
    def _stop_sweeper(**_: Any) -> None:
        for stop in _sweeper_stop:
            stop.set()

    @signals.worker_process_shutdown.connect(weak=False)
    def _process_exit(pid: int | None = None, **_: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and pid:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@signals.before_task_publish.connect
def _publish_correlation(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry the current correlation id into every task message."""
    value = correlation_id.get()
    if headers is not None and value and HEADER not in headers:
        headers[HEADER] = value


@signals.task_prerun.connect
def _task_correlation(task: Any = None, **_: Any) -> None:
    """Restore the correlation id inside the task, so its log lines carry it."""
    value = getattr(task.request, HEADER, None) if task is not None else None
    correlation_id.set(value)
