"""Task names and the Celery app factory (the seed's settings, made safe).

A leaf module: producers (API, report workflow, sweeper) and workers share it without importing
each other.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from compliance.redis_client import RedisTarget
from compliance.settings import Settings

DELIVER_TASK = "compliance.deliver_webhook"
REPORT_TASK = "compliance.generate_report"


class ComplianceCelery(Celery):
    """A Celery app that carries the service settings it was built from."""

    settings: Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration derived from settings (pure; unit-tested)."""
    target = RedisTarget.from_settings(settings)
    return {
        "broker_url": target.broker_url(),
        # kombu's Redis transport, surviving a full Redis (see compliance.broker_transport); its
        # Sentinel variant follows a failover to the new primary.
        "broker_transport": ("compliance.broker_transport:SentinelTransport" if target.uses_sentinel
                             else "compliance.broker_transport:Transport"),
        "broker_transport_options": {
            **target.broker_transport_options(timeout=settings.redis_socket_timeout),
            "global_keyprefix": settings.broker_key_prefix,
            # Above the longest task time limit plus the longest countdown (checked by Settings).
            "visibility_timeout": settings.broker_visibility_timeout,
            # kombu sweeps every interval * throttle seconds (default 10 * 10): make it one knob.
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
            # A worker killed while holding the restore lock blocks restores only this long.
            "unacked_mutex_expire": settings.broker_unacked_mutex_expire,
        },
        "broker_connection_retry_on_startup": True,
        # A Redis restart, failover or outage is waited out for as long as it lasts (each retry
        # is logged); Celery's default gives up after 100 tries and ends the worker.
        "broker_connection_max_retries": None,
        "broker_pool_limit": 10,
        "task_default_queue": settings.queue_name,
        "task_routes": {
            DELIVER_TASK: {"queue": settings.delivery_queue_name},
            REPORT_TASK: {"queue": settings.queue_name},
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "worker_concurrency": settings.worker_concurrency,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A hard time limit requeues the message instead of acking it. (Any other failure is
        # rejected *without* requeue, which deletes it: so the tasks catch their own errors and
        # raise Reject(requeue=True), bounded by their run counters.)
        "task_acks_on_failure_or_timeout": False,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": settings.task_soft_time_limit,
        # A delivery is one bounded HTTP exchange: its own, much shorter limit (its lease is
        # derived from it, so a hung attempt can never outlive the lease).
        "task_annotations": {DELIVER_TASK: {
            "time_limit": settings.delivery_task_time_limit,
            "soft_time_limit": max(1, settings.delivery_task_time_limit - 2),
        }},
        # Report worker processes are replaced now and then (the seed: restart against leaks).
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child or None,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child or None,
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout,
        # Idle workers stop at once; unacked (incl. countdown) messages are restored on shutdown.
        "worker_enable_soft_shutdown_on_idle": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def create_celery_app(settings: Settings, *, include_tasks: bool = True) -> ComplianceCelery:
    """Build the app; no connection is made until a task is sent or a worker starts."""
    app = ComplianceCelery(
        "compliance",
        include=(["compliance.worker.delivery_tasks", "compliance.worker.report_tasks"]
                 if include_tasks else []),
        set_as_current=include_tasks,
    )
    app.settings = settings
    app.conf.update(celery_config(settings))
    return app
