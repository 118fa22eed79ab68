"""Webhook submission, status reads and cleanup."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from compliance.api.deps import AdminAuth, ProducerAuth, ServicesDep
from compliance.api.errors import APIError, field_error
from compliance.api.json_limits import check_json_depth
from compliance.api.services import Services
from compliance.delivery import ssrf
from compliance.delivery.models import Envelope
from compliance.delivery.submit import new_webhook_id
from compliance.store.records import Status, WebhookStatus
from compliance.store.statuses import decode_cursor

router = APIRouter()

EVENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class WebhookRequest(BaseModel):
    """A webhook to deliver."""

    model_config = {"extra": "forbid"}

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


async def check_url(services: Services, url: str, field: str) -> None:
    """422 naming ``field`` when the URL fails the outbound check."""
    settings = services.settings
    try:
        target = ssrf.parse_target(url, https_only=settings.https_only,
                                   allowed_ports=settings.allowed_ports)
        await asyncio.to_thread(ssrf.resolve_checked, target,
                                allow_loopback=settings.allow_loopback_targets)
    except ssrf.UnsafeURLError as exc:
        raise field_error(field, exc.reason) from exc


async def shed_load(services: Services, queue: str) -> None:
    """503 + Retry-After when ``queue`` is past the configured length."""
    length = await asyncio.to_thread(services.queue_lengths)
    if length.get(queue, 0) >= services.settings.max_queue_length:
        raise APIError(503, "overloaded", f"queue {queue} is full; retry later",
                       headers={"Retry-After": str(services.settings.shed_retry_after_seconds)})


@router.post("/webhooks", status_code=202, response_model=Accepted, dependencies=[ProducerAuth])
async def submit_webhook(body: WebhookRequest, services: ServicesDep, request: Request) -> Accepted:
    """Accept a webhook and queue its delivery."""
    check_json_depth(body.payload, limit=services.settings.max_json_depth, field="body.payload")
    await check_url(services, body.url, "body.url")
    await shed_load(services, services.settings.delivery_queue_name)
    cid = correlation_id.get() or ""
    env = Envelope(webhook_id=new_webhook_id(), url=body.url, event=body.event,
                   payload=body.payload, correlation_id=cid)
    await asyncio.to_thread(services.submitter.submit, env)
    return Accepted(webhook_id=env.webhook_id, correlation_id=cid,
                    status_url=str(request.url_for("get_webhook_status", webhook_id=env.webhook_id)))


@router.get("/webhook-statuses", response_model=StatusPage, dependencies=[ProducerAuth])
async def list_webhook_statuses(
    services: ServicesDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> StatusPage:
    """Statuses, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    if cursor:
        try:
            decode_cursor(cursor)
        except ValueError as exc:
            raise field_error("query.cursor", "malformed cursor") from exc
    page = await asyncio.to_thread(services.statuses.page, status=status,
                                   limit=min(limit, services.settings.max_page_size), cursor=cursor)
    return StatusPage(items=page.items, next_cursor=page.next_cursor, total=page.total)


@router.get("/webhook-statuses/{webhook_id}", response_model=WebhookStatus,
            dependencies=[ProducerAuth])
async def get_webhook_status(webhook_id: str, services: ServicesDep) -> WebhookStatus:
    """One status record; 404 when unknown or expired."""
    record = await asyncio.to_thread(services.statuses.get, webhook_id)
    if record is None:
        raise APIError(404, "not_found", f"no status for webhook {webhook_id}")
    return record


class CleanupResult(BaseModel):
    """What cleanup removed."""

    deleted: int
    status: Status | None
    older_than_days: float


@router.post("/webhook-cleanup", response_model=CleanupResult, dependencies=[AdminAuth])
async def webhook_cleanup(
    services: ServicesDep,
    older_than_days: Annotated[float, Query(ge=0, le=3650)],
    status: Status | None = None,
) -> CleanupResult:
    """Delete status records (of ``status``) last changed more than ``older_than_days`` ago.

    ``older_than_days`` is required: a bare POST would otherwise wipe every record, pending and
    retrying ones included. ``older_than_days=0`` says so explicitly.
    """
    deleted = await asyncio.to_thread(services.statuses.cleanup, status=status,
                                      older_than_seconds=older_than_days * 86400)
    return CleanupResult(deleted=deleted, status=status, older_than_days=older_than_days)
