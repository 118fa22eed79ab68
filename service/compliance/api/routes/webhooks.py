"""Webhook submission, status reads and cleanup."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from compliance.api.deps import (
    AdminDep,
    AuditDep,
    ProducerDep,
    SettingsDep,
    StatusesDep,
)
from compliance.api.errors import APIError, error_responses, field_error
from compliance.api.json_limits import check_body
from compliance.api.principal import Principal
from compliance.delivery import fairshare, ssrf
from compliance.delivery.models import Envelope
from compliance.delivery.submit import new_webhook_id
from compliance.observability import metrics
from compliance.settings import Settings
from compliance.store import replication
from compliance.store.records import Scope, Status, WebhookStatus
from compliance.store.schedule import Admission, Verdict
from compliance.store.statuses import CleanupRule, decode_cursor
from compliance.store.tenants import TENANT_ID_PATTERN
from compliance.wiring import Container

router = APIRouter()
log = logging.getLogger(__name__)

EVENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class WebhookRequest(BaseModel):
    """A webhook to deliver."""

    model_config = {"extra": "forbid", "strict": True}  # JSON types as declared: no "1" for 1, 0 for false

    url: str = Field(min_length=1, max_length=2048, description="Receiver URL (http/https).")
    event: str = Field(pattern=EVENT_PATTERN, description="Event type, e.g. report.completed.")
    payload: dict[str, Any] = Field(description="JSON object sent as `data`.")


class Accepted(BaseModel):
    """The 202 answer."""

    webhook_id: str
    status_url: str
    correlation_id: str


class StatusPage(BaseModel):
    """A page of status records, newest first."""

    items: list[WebhookStatus]
    next_cursor: str | None
    total: int


async def check_url(settings: Settings, url: str, field: str) -> None:
    """422 naming ``field`` when the URL fails the outbound check."""
    try:
        target = ssrf.parse_target(url, https_only=settings.https_only,
                                   allowed_ports=settings.allowed_ports)
        allowed = ssrf.networks(tuple(settings.allowed_target_networks))
        if ssrf.is_ip_literal(target.host):  # no DNS: no reason to leave the event loop
            ssrf.resolve_checked(target, allow_loopback=settings.allow_loopback_targets,
                                 allowed_networks=allowed)
        else:
            await asyncio.to_thread(ssrf.resolve_checked, target,
                                    allow_loopback=settings.allow_loopback_targets,
                                    allowed_networks=allowed)
    except ssrf.UnsafeURLError as exc:
        raise field_error(field, exc.reason) from exc


async def shed_load(container: Container, queue: str) -> None:
    """503 + Retry-After when ``queue`` is past the configured length."""
    await asyncio.to_thread(refuse_when_full, container, queue)


def refuse_when_full(container: Container, queue: str) -> None:
    """The blocking half of ``shed_load`` (for callers already off the event loop)."""
    settings = container.settings
    if container.queue_length(queue) >= settings.max_queue_length:
        raise overloaded(settings, queue)


def overloaded(settings: Settings, queue: str) -> APIError:
    """The 503 of a full queue, with Retry-After."""
    return APIError(503, "overloaded", f"queue {queue} is full; retry later",
                    headers={"Retry-After": str(settings.shed_retry_after_seconds)})


def refused(settings: Settings, verdict: Verdict) -> APIError:
    """The answer to a refused submission: 503 for the fleet's full queue, 429 for a tenant
    past its own cap or rate (other tenants are not affected), each with Retry-After."""
    if verdict.admission is Admission.OVERLOADED:
        return overloaded(settings, settings.delivery_queue_name)
    wait = fairshare.retry_after(verdict, cap_retry_after=settings.shed_retry_after_seconds)
    if verdict.admission is Admission.TENANT_CAP:
        message = (f"this tenant has {settings.tenant_max_live_webhooks} webhooks queued or "
                   "scheduled, its cap; retry once some are delivered")
        return APIError(429, "tenant_cap", message, headers={"Retry-After": str(wait)})
    return APIError(429, "tenant_rate",
                    f"this tenant submits faster than its rate; retry in {wait} s",
                    headers={"Retry-After": str(wait)})


_last_unreplicated_log = float("-inf")


def await_replicas(container: Container) -> None:
    """With ``redis_wait_replicas``, block until that many replicas hold what this request
    wrote (or the timeout: the 202 still goes out, the record is on the primary, and the miss is
    counted and logged). Called after the record and its queue message are written."""
    settings = container.settings
    if not settings.redis_wait_replicas:
        return
    outcome = replication.wait_for_replicas(container.redis, replicas=settings.redis_wait_replicas,
                                            timeout_ms=settings.redis_wait_timeout_ms)
    _count_replica_wait(settings, outcome)


async def await_replicas_async(container: Container, aredis: Any) -> None:
    """``await_replicas`` on the event loop's asyncio client."""
    settings = container.settings
    if not settings.redis_wait_replicas:
        return
    outcome = await replication.wait_for_replicas_async(
        aredis, replicas=settings.redis_wait_replicas, timeout_ms=settings.redis_wait_timeout_ms)
    _count_replica_wait(settings, outcome)


def _count_replica_wait(settings: Settings, outcome: replication.ReplicaWait) -> None:
    metrics.REPLICA_WAITS.labels(result="met" if outcome.met else "timeout").inc()
    global _last_unreplicated_log  # noqa: PLW0603 - one throttle per process
    if not outcome.met and time.monotonic() - _last_unreplicated_log > 10:
        # Once per 10 s: with no replica connected, every request would log it.
        _last_unreplicated_log = time.monotonic()
        log.warning("accepted before enough replicas acknowledged", extra={
            "replicas_acknowledged": outcome.acknowledged, "replicas_wanted": outcome.wanted,
            "wait_ms": settings.redis_wait_timeout_ms})


# An admin's filter of a listing: one named tenant's records (the tenant's own index).
TenantFilter = Annotated[str | None, Query(pattern=TENANT_ID_PATTERN, description=(
    "Admin keys: only this tenant's records. Other keys always see their own tenant's."))]


def listing_scope(principal: Principal, tenant: str | None) -> Scope:
    """Whose records a listing shows: an admin's ``?tenant=`` (or everyone's), else the
    caller's own tenant's."""
    if principal.admin and tenant is not None:
        return Scope(tenant=tenant)
    return principal.scope


@router.post("/webhooks", status_code=202, response_model=Accepted,
             responses=error_responses(401, 403, 413, 422, 429, 503))
async def submit_webhook(body: WebhookRequest, request: Request,
                         principal: ProducerDep) -> JSONResponse:
    """Accept a webhook and queue its delivery."""
    # The hottest route: its objects are read off the app, not resolved as dependencies (each
    # one FastAPI resolves per request costs more than the attribute read it stands for).
    container: Container = request.app.state.container
    aredis = request.app.state.aredis
    submitter = container.submitter
    settings = container.settings
    check_body(body, max_depth=settings.max_json_depth, free_form=("payload",))
    await check_url(settings, body.url, "body.url")
    cid = correlation_id.get() or ""
    env = Envelope(webhook_id=new_webhook_id(), url=body.url, event=body.event,
                   payload=body.payload, correlation_id=cid, tenant=principal.tenant)
    # The queue-length check, the tenant's cap and rate, the record and the signal: one script,
    # on this event loop.
    verdict = await submitter.submit_async(aredis, env, most_queued=settings.max_queue_length,
                                           limits=fairshare.limits_for(settings, principal.tenant))
    if not verdict.accepted:
        raise refused(settings, verdict)
    await await_replicas_async(container, aredis)
    # The answer as a response, not a model: FastAPI would validate and serialise it again (the
    # route's response_model still documents it). The status URL is the route's path under the
    # base URL (which carries the root path), without url_for's search of every route.
    accepted = Accepted(webhook_id=env.webhook_id, correlation_id=cid,
                        status_url=f"{request.base_url}webhook-statuses/{env.webhook_id}")
    return JSONResponse(accepted.model_dump(), status_code=202)


@router.get("/webhook-statuses", response_model=StatusPage,
            responses=error_responses(401, 403, 422, 503))
async def list_webhook_statuses(
    statuses: StatusesDep,
    settings: SettingsDep,
    principal: ProducerDep,
    status: Status | None = None,
    tenant: TenantFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> StatusPage:
    """Statuses, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    if cursor:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise field_error("query.cursor", "malformed cursor") from exc
    page = await asyncio.to_thread(statuses.page, status=status,
                                   limit=min(limit, settings.max_page_size), cursor=cursor,
                                   scope=listing_scope(principal, tenant))
    return StatusPage(items=page.items, next_cursor=page.next_cursor, total=page.total)


@router.get("/webhook-statuses/{webhook_id}", response_model=WebhookStatus,
            responses=error_responses(401, 403, 404, 422, 503))
async def get_webhook_status(webhook_id: str, statuses: StatusesDep,
                             principal: ProducerDep) -> WebhookStatus:
    """One status record; 404 when unknown, expired, or another tenant's."""
    record = await asyncio.to_thread(statuses.get, webhook_id)
    if record is None or not principal.sees(record.tenant):
        raise APIError(404, "not_found", f"no status for webhook {webhook_id}")
    return record


class CleanupResult(BaseModel):
    """What cleanup removed."""

    deleted: int
    status: Status | None
    older_than_days: float | None


@router.post("/webhook-cleanup", response_model=CleanupResult,
             responses=error_responses(401, 403, 422, 503))
async def webhook_cleanup(
    statuses: StatusesDep,
    audit: AuditDep,
    principal: AdminDep,
    older_than_days: Annotated[float | None, Query(ge=0, le=3650)] = None,
    status: Status | None = None,
) -> CleanupResult:
    """Delete status records (of ``status``) last changed more than ``older_than_days`` ago.

    With a status and no age, every record of that status goes (the seed's
    ``?status=delivered``). A bare POST that names neither is refused: it would wipe every
    record, pending and retrying ones included; ``older_than_days=0`` says so explicitly.
    """
    try:
        rule = CleanupRule(status=status, older_than_days=older_than_days)
    except ValueError as exc:
        raise field_error("query.older_than_days", str(exc)) from exc
    deleted = await asyncio.to_thread(statuses.apply, rule)
    await asyncio.to_thread(audit.record, actor=principal.key_id, action="webhook.cleanup",
                            tenant=principal.tenant,
                            detail={"status": status, "older_than_days": older_than_days,
                                    "deleted": deleted})
    return CleanupResult(deleted=deleted, status=status, older_than_days=older_than_days)
