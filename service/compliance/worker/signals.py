"""Worker lifecycle hooks: logging, per-process clients, metrics endpoint, correlation ids, and
the delivery sweeper in every worker that consumes the delivery queue."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from asgi_correlation_id import correlation_id
from celery import Celery, signals
from prometheus_client import start_http_server

from compliance.observability import metrics
from compliance.observability.logs import configure_logging
from compliance.redis_client import check_eviction_policy, create_redis
from compliance.settings import Settings
from compliance.wiring import forget_process, process_container
from compliance.worker.liveness import Heartbeat

log = logging.getLogger(__name__)
HEADER = "correlation_id"
_sweeper_stop: list[Any] = []
_pumps: list[Any] = []


def running_engine() -> Any:
    """This process's delivery engine while it takes work, or None."""
    return next((pump for pump in _pumps if pump.taking), None)


def engine_in_flight() -> int:
    """Deliveries this process's engines hold now (taken, not yet committed)."""
    return sum(pump.in_flight for pump in _pumps)


def _redis_answers(container: Any) -> bool:
    try:
        return bool(container.redis.ping())
    except Exception:
        return False


def _stop_taking_on_signals() -> None:
    """Stop the engines' intake the moment a shutdown signal arrives. Celery's own handler first
    waits out the soft shutdown and only then announces it (``worker_shutting_down``): an engine
    would keep taking new work all that while."""
    for name in ("SIGTERM", "SIGQUIT", "SIGINT"):
        sig = getattr(signal, name)
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def _handler(signum: int, frame: Any, previous: Any = previous) -> None:
            for pump in _pumps:
                pump.stop(timeout=0)
            previous(signum, frame)

        signal.signal(sig, _handler)


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
            start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host,
                              registry=registry)
            log.info("worker metrics listening", extra={"host": settings.worker_metrics_host,
                                                        "port": settings.worker_metrics_port})

    @signals.worker_process_init.connect(weak=False)
    def _after_fork(**_: Any) -> None:
        forget_process()

    @signals.worker_ready.connect(weak=False)
    def _start_delivery_engine(sender: Any = None, **_: Any) -> None:
        container = process_container(settings)
        heartbeat = Heartbeat(settings.worker_heartbeat_file,
                              window=settings.worker_liveness_seconds,
                              redis_up=lambda: _redis_answers(container))
        timer = getattr(sender, "timer", None)
        if timer is not None:  # Celery's consumer loop runs its timer: a tick means it turns
            heartbeat.beat("consumer")
            timer.call_repeatedly(min(5.0, settings.worker_liveness_seconds / 4),
                                  lambda: heartbeat.beat("consumer"))
        _sweeper_stop.append(heartbeat.start())
        if not _consumes_deliveries(sender, settings):
            return
        heartbeat.watch("sweeper", lambda: container.sweeper.last_turn)
        _sweeper_stop.append(container.sweeper.start())
        log.info("delivery sweeper started", extra={"interval": settings.delivery_sweep_interval})
        configured = sender.app.conf.get("compliance_pump_in_flight")
        in_flight = settings.delivery_concurrency if configured is None else int(configured)
        if settings.delivery_engine == "pump" and in_flight > 0:
            pump = container.pump(in_flight)
            pump.start()
            _pumps.append(pump)
            heartbeat.watch("engine", lambda: pump.last_turn)
            _stop_taking_on_signals()
            log.info("delivery engine started", extra={"max_in_flight": in_flight})

    @signals.worker_shutting_down.connect(weak=False)
    def _stop_taking(**_: Any) -> None:
        for stop in _sweeper_stop:
            stop.set()
        # The engine takes nothing more and its in-flight deliveries finish and are recorded
        # here: a cold shutdown (SIGTERM is remapped to SIGQUIT) never sends worker_shutdown,
        # and the engine's thread dies with the process. Celery waits in this same handler for
        # its own running tasks (the soft shutdown), so this is the place to wait.
        for pump in _pumps:
            if not pump.stop(timeout=settings.worker_soft_shutdown_timeout):
                log.warning("delivery engine stopped with work in flight; leases bring it back")

    @signals.worker_shutdown.connect(weak=False)
    def _drain(**_: Any) -> None:
        for pump in _pumps:
            if not pump.stop(timeout=settings.worker_soft_shutdown_timeout):
                log.warning("delivery engine stopped with work in flight; leases bring it back")

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
