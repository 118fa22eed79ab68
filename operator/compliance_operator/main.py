"""kopf registrations, kept thin: ``kopf run -m compliance_operator.main``.

Peering (HA): with several replicas only the highest-priority one acts; the others wait. Each
process draws its own priority (policy.peering_priority), because kopf pauses every operator
when two live ones tie.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from compliance_operator import AUTOSCALERS, GROUP, REPLAYS, VERSION, handlers, k8s, metrics_source, policy
from compliance_operator.settings import OperatorSettings
from compliance_operator.spec import DEFAULT_POLLING_INTERVAL_SECONDS, AutoscalerSpec

log = logging.getLogger(__name__)
JOB_LABELS = {"app.kubernetes.io/managed-by": "compliance-operator"}


def registry() -> kopf.OperatorRegistry:
    """The registry these handlers were registered in (kopf's default one)."""
    return kopf.get_default_registry()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build settings and clients here, not at import."""
    cfg = OperatorSettings()
    logging.getLogger().setLevel(cfg.log_level)
    settings.peering.name = cfg.peering_name
    settings.peering.priority = policy.peering_priority(cfg.peering_priority, settings.peering.priority,
                                                        random.SystemRandom().randint)
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    settings.peering.standalone = cfg.standalone or settings.peering.standalone
    settings.scanning.disabled = cfg.scanning_disabled or settings.scanning.disabled
    settings.posting.reporting_component = "compliance-operator"
    settings.persistence.finalizer = f"{GROUP}/operator"
    memo.ctx = handlers.Context(
        settings=cfg, kube=k8s.Kube.from_environment(timeout=cfg.api_timeout_seconds),
        redis=metrics_source.RedisClients(timeout=cfg.redis_timeout_seconds))


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Release the pools."""
    ctx = memo.get("ctx")
    if ctx is not None:
        ctx.redis.close()
        ctx.kube.close()


@kopf.daemon(GROUP, VERSION, AUTOSCALERS, cancellation_timeout=10.0)
def autoscale(stopped: kopf.DaemonStopped, body: kopf.Body, status: kopf.Status, memo: kopf.Memo,
              **_: Any) -> None:
    """Poll every spec.pollingIntervalSeconds (``body`` is live: spec edits apply next poll)."""
    state = handlers.AutoscalerState.from_status(status)
    while not stopped:
        interval = DEFAULT_POLLING_INTERVAL_SECONDS
        try:
            spec = AutoscalerSpec.from_body(body)  # once per poll: the live body's current spec
            interval = spec.polling_interval
            handlers.reconcile_autoscaler(memo.ctx, spec, state)
        except Exception:  # one failed poll must not end the daemon; the next one retries
            log.exception("autoscaler %s/%s: poll failed", body.meta.namespace, body.meta.name)
        stopped.wait(interval)


@kopf.on.resume(GROUP, VERSION, REPLAYS)
@kopf.on.create(GROUP, VERSION, REPLAYS)
def replay(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Create the replay Job (exactly one: deterministic name, 409 is fine)."""
    patch.status.update(handlers.start_replay(memo.ctx, body))


@kopf.on.event("batch", "v1", "jobs", labels=JOB_LABELS)
def replay_job(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Job progress and completion flow into the owning DeadLetterReplay's status."""
    if event.get("type") != "DELETED":
        handlers.sync_replay(memo.ctx, body)
