"""``compliance cleanup``: retention in one pass, from a shell or the chart's CronJob."""

from __future__ import annotations

import json
import time

import click

from compliance.cli.metrics_dir import ensure_multiproc_dir
from compliance.store.records import Status
from compliance.store.statuses import CleanupRule


@click.command()
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None,
              help="Delete status records of this status (with --older-than-days: only older ones).")
@click.option("--older-than-days", type=click.FloatRange(0, 3650), default=None,
              help="Delete status records last changed more than this many days ago (0: every age).")
@click.option("--documents/--no-documents", default=True, show_default=True,
              help="Also delete report documents and evidence older than COMPLIANCE_REPORT_TTL.")
@click.option("--audit/--no-audit", "audit", default=True, show_default=True,
              help="Also archive audit entries older than COMPLIANCE_AUDIT_REDIS_SECONDS to the "
                   "report storage (compliance audit archive).")
def cleanup(status: str | None, older_than_days: float | None, documents: bool,
            audit: bool) -> None:
    """Prune statuses by the cleanup rules, expire stored report documents and archive old
    audit entries.

    The status rule is POST /webhook-cleanup's (name a status, an age, or both); without either,
    no status record is deleted. Index entries of expired records and dead letters are always
    pruned. Prints a JSON summary of what was removed on the last line.
    """
    # Imported here: the service stack loads prometheus_client, which `compliance worker` must
    # configure first (same CLI). Its multiprocess directory (the chart sets one) must exist.
    ensure_multiproc_dir()
    from pydantic import ValidationError

    from compliance.reports import audit_archive, retention
    from compliance.reports.storage import StorageError
    from compliance.settings import Settings
    from compliance.store.audit import SYSTEM_CLI
    from compliance.wiring import Container

    rule = None
    if status is not None or older_than_days is not None:
        rule = CleanupRule(status=Status(status) if status else None, older_than_days=older_than_days)
    try:
        services = Container(Settings())
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from exc
    settings = services.settings
    archived: dict[str, object] | None = None
    try:
        now = time.time()
        result = retention.run(
            statuses=services.statuses, dead_letters=services.dead_letters,
            storage=services.storage if documents else None, rule=rule,
            report_ttl=settings.report_ttl, now=now)
        if rule is not None:
            services.audit.record(actor=SYSTEM_CLI, action="webhook.cleanup", detail={
                "status": status, "older_than_days": older_than_days,
                "deleted": result.statuses_deleted})
        if audit:
            archived = audit_archive.archive(
                services.audit, services.storage, before=now - settings.audit_redis_seconds,
                segment_entries=settings.audit_segment_entries).as_dict()
    except StorageError as exc:
        raise click.ClickException(f"report storage failed: {exc}") from exc
    finally:
        services.close()
    summary = {**result.as_dict(), "status": status, "older_than_days": older_than_days,
               "audit": archived}
    click.echo(json.dumps(summary, sort_keys=True))
