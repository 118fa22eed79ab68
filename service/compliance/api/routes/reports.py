"""Report routes: ``POST /reports``, ``GET /reports/{id}``, ``/reports/{id}/content``, ``/frameworks``."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from compliance.api.deps import ContainerDep, ProducerAuth, ProducerDep
from compliance.api.errors import APIError, error_responses, field_error
from compliance.api.json_limits import check_body
from compliance.api.principal import Principal
from compliance.api.routes.webhooks import await_replicas, check_url, refused, shed_load
from compliance.delivery import fairshare
from compliance.delivery.submit import new_webhook_id
from compliance.reports import render, workflow
from compliance.reports.facade import ComplianceFacade, FrameworkInfo
from compliance.reports.storage import ReportStorage, StorageError, StorageNotFoundError
from compliance.store.reports import ReportRecord, ReportStatus, ReportStore
from compliance.wiring import Container

log = logging.getLogger(__name__)
router = APIRouter()

ReportId = Annotated[str, Path(pattern=workflow.REPORT_ID_PATTERN, description="A report id (rpt_...).")]


@dataclass
class Reports:
    """The report domain's clients in the API process; a part that failed to build is None."""

    records: ReportStore
    facade: ComplianceFacade | None
    storage: ReportStorage | None
    facade_error: str | None = None
    storage_error: str | None = None

    def need_facade(self) -> ComplianceFacade:
        """The facade, or 503 when it did not load."""
        if self.facade is None:
            raise APIError(503, "facade_unavailable", f"compliance facade unavailable: {self.facade_error}")
        return self.facade

    def need_storage(self) -> ReportStorage:
        """The storage, or 503 when it is misconfigured."""
        if self.storage is None:
            raise APIError(503, "storage_unavailable", f"report storage unavailable: {self.storage_error}",
                           headers={"Retry-After": "30"})
        return self.storage


def get_reports(request: Request) -> Reports:
    """The report clients built by ``build_reports`` in the app factory."""
    reports: Reports = request.app.state.reports
    return reports


ReportsDep = Annotated[Reports, Depends(get_reports)]


def build_reports(container: Container) -> Reports:
    """Build facade and storage; a failure is reported by /health instead of stopping the API."""
    facade: ComplianceFacade | None = None
    storage: ReportStorage | None = None
    facade_error = storage_error = None
    try:
        facade = container.facade
    except Exception as exc:
        facade_error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("compliance facade failed to load", extra={"error": facade_error})
    try:
        storage = container.storage
    except Exception as exc:
        storage_error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("report storage failed to build", extra={"error": storage_error})
    return Reports(records=container.reports, facade=facade, storage=storage,
                   facade_error=facade_error, storage_error=storage_error)


class ReportRequest(BaseModel):
    """A report to generate."""

    model_config = {"extra": "forbid", "strict": True}  # JSON types as declared: no "1" for 1, 0 for false

    framework: str = Field(min_length=1, max_length=64, description="A framework id from GET /frameworks.")
    subject: str = Field(min_length=1, max_length=200, description="What is assessed, e.g. an account.")
    evidence: dict[str, Any] = Field(description="JSON object the framework's controls read.")
    webhook_url: str = Field(min_length=1, max_length=2048, description="Receiver of the result webhook.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Echoed in the webhooks.")


class ReportAccepted(BaseModel):
    """The 202 answer."""

    report_id: str
    webhook_id: str
    correlation_id: str
    status_url: str


class FrameworkList(BaseModel):
    """Frameworks a report may be asked for."""

    frameworks: list[FrameworkInfo]


def validate_request(body: ReportRequest, facade: ComplianceFacade, *, max_evidence_bytes: int,
                     max_metadata_bytes: int, max_json_depth: int) -> None:
    """Nesting, framework, sizes and evidence shape; raises APIError naming the field."""
    # First: the size and shape checks below walk the JSON recursively.
    check_body(body, max_depth=max_json_depth, free_form=("evidence", "metadata"))
    known = [f.id for f in facade.frameworks()]
    if body.framework not in known:
        raise field_error("body.framework", f"unknown framework; known: {', '.join(known)}")
    size = workflow.json_size(body.evidence)
    if size > max_evidence_bytes:
        message = f"evidence is {size} bytes of JSON; the limit is {max_evidence_bytes}"
        raise APIError(413, "payload_too_large", f"body.evidence: {message}",
                       details=[{"field": "body.evidence", "message": message}])
    if not body.evidence:
        raise field_error("body.evidence", "must not be empty")
    problems = facade.check_evidence(body.framework, body.evidence)
    if problems:
        raise APIError(422, "validation_error", "; ".join(
            f"body.evidence{'.' + p.path if p.path else ''}: {p.message}" for p in problems[:5]),
            details=[{"field": f"body.evidence{'.' + p.path if p.path else ''}", "message": p.message}
                     for p in problems])
    if workflow.json_size(body.metadata) > max_metadata_bytes:
        raise field_error("body.metadata", f"larger than {max_metadata_bytes} bytes of JSON")


@router.post("/reports", status_code=202, response_model=ReportAccepted,
             responses=error_responses(401, 403, 413, 422, 429, 503))
async def submit_report(body: ReportRequest, container: ContainerDep, reports: ReportsDep,
                        request: Request, principal: ProducerDep) -> ReportAccepted:
    """Accept a report: validate, store the evidence, queue generation."""
    settings = container.settings
    facade = reports.need_facade()
    validate_request(body, facade, max_evidence_bytes=settings.max_evidence_bytes,
                     max_metadata_bytes=settings.max_metadata_bytes,
                     max_json_depth=settings.max_json_depth)
    await check_url(settings, body.webhook_url, "body.webhook_url")
    await shed_load(container, settings.queue_name)
    # The report ends in a webhook of this tenant's: its cap and rate apply now.
    limits = fairshare.limits_for(settings, principal.tenant)
    verdict = await asyncio.to_thread(
        container.schedule.admit, principal.tenant, now=time.time(),
        ttl=settings.status_ttl_open, cap=limits.cap, rate=limits.rate, burst=limits.burst)
    if not verdict.accepted:
        raise refused(settings, verdict)
    storage = reports.need_storage()
    try:
        accepted = await asyncio.to_thread(
            workflow.accept, celery=container.celery, records=reports.records, storage=storage,
            settings=settings, framework=body.framework, subject=body.subject,
            evidence=body.evidence, webhook_url=body.webhook_url, metadata=body.metadata,
            correlation_id=correlation_id.get() or "", webhook_id=new_webhook_id(),
            tenant=principal.tenant)
        await asyncio.to_thread(await_replicas, container)
    except StorageError as exc:
        log.error("evidence could not be stored", extra={"error": str(exc)})
        raise APIError(503, "storage_unavailable", "report storage is unavailable; retry later",
                       headers={"Retry-After": "30"}) from exc
    return ReportAccepted(
        report_id=accepted.report_id, webhook_id=accepted.webhook_id,
        correlation_id=accepted.correlation_id,
        status_url=str(request.url_for("get_report", report_id=accepted.report_id)))


@router.get("/reports/{report_id}", response_model=ReportRecord,
            responses=error_responses(401, 403, 404, 422, 503))
async def get_report(report_id: ReportId, reports: ReportsDep,
                     principal: ProducerDep) -> ReportRecord:
    """Status, summary, timestamps and webhook id; 404 when unknown, expired or another
    tenant's."""
    record = await asyncio.to_thread(reports.records.get, report_id)
    if record is None or not principal.sees(record.tenant):
        raise APIError(404, "not_found", f"no report {report_id}")
    return record


# The document in the asked-for format (the JSON document's shape belongs to the facade).
CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The report document (?format= picks the media type).",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/csv": {"schema": {"type": "string"}},
                      "text/html": {"schema": {"type": "string"}}}},
    **error_responses(401, 403, 404, 409, 422, 503),
}


@router.get("/reports/{report_id}/content", responses=CONTENT_RESPONSES)
async def get_report_content(
    report_id: ReportId, reports: ReportsDep, principal: ProducerDep,
    format: Annotated[render.Format, Query(description="json, csv or html")] = "json",
) -> Response:
    """The stored report document; 409 while it is being generated, 404 when there is none
    (or it is another tenant's)."""
    body = await report_content(reports, report_id, format, principal)
    return Response(body, media_type=render.MEDIA_TYPES[format])


async def report_content(reports: Reports, report_id: str, format: render.Format,
                         principal: Principal) -> str:
    """The stored document rendered as ``format``; APIError 409 while it is being generated,
    404 when there is none (or it failed, or it is not ``principal``'s), 503 when storage is
    down. A document whose record has expired is an admin's or the default tenant's to read
    (a named tenant's reads need the record, which names the tenant)."""
    record = await asyncio.to_thread(reports.records.get, report_id)
    if (record is not None and not principal.sees(record.tenant)) or (
            record is None and principal.tenant is not None and not principal.admin):
        raise APIError(404, "not_found", f"no report {report_id}")
    if record is not None and record.status is not ReportStatus.COMPLETED:
        if record.status is ReportStatus.FAILED:
            raise APIError(404, "not_found", f"report {report_id} failed: {record.error}")
        raise APIError(409, "not_ready", f"report {report_id} is {record.status.value}",
                       headers={"Retry-After": "5"})
    storage = reports.need_storage()
    try:
        # The document may outlive its Redis record (storage keeps it; the record has a TTL).
        document = await asyncio.to_thread(workflow.load_document, storage, report_id)
    except StorageNotFoundError as exc:
        raise APIError(404, "not_found", f"no report {report_id}") from exc
    except StorageError as exc:
        raise APIError(503, "storage_unavailable", "report storage is unavailable; retry later",
                       headers={"Retry-After": "30"}) from exc
    return render.render(document, format)


@router.get("/frameworks", response_model=FrameworkList, dependencies=[ProducerAuth],
            responses=error_responses(401, 403, 503))
async def list_frameworks(reports: ReportsDep) -> FrameworkList:
    """The shipped control packs with their controls (id, title, severity)."""
    return FrameworkList(frameworks=reports.need_facade().frameworks())
