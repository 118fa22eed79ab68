"""``compliance audit verify|archive|list``: the audit trail from a shell or a CronJob."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import TYPE_CHECKING

import click

from compliance.cli.dlq import parse_duration

if TYPE_CHECKING:  # importing the service stack here would load prometheus_client too early
    from compliance.wiring import Container

_ANCHOR = re.compile(r"^(\d+):([0-9a-f]{40})$")


class CannotVerify(click.ClickException):
    """The chain could not be read (Redis, storage, a running archive pass): exit 2, apart from
    a broken chain's 1."""

    exit_code = 2


def _services() -> Container:
    # Imported here: the service stack loads prometheus_client, which `compliance worker` must
    # configure first (same CLI).
    from pydantic import ValidationError

    from compliance.settings import Settings
    from compliance.wiring import Container

    try:
        return Container(Settings())
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from exc


def _anchor(value: str) -> tuple[int, str]:
    match = _ANCHOR.match(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not SEQ:HASH (a sequence number and 40 hex digits)")
    return int(match[1]), match[2]


@click.group()
def audit() -> None:
    """Verify, archive and read the audit trail (docs/audit.md)."""


@audit.command()
@click.option("--anchor", "anchors", multiple=True,
              help="SEQ:HASH of the chain kept elsewhere (a log line, a ticket): the chain must "
                   "still pass through it (repeatable).")
def verify(anchors: tuple[str, ...]) -> None:
    """Check the whole chain (archived segments, then Redis): exit 0 when intact, 1 naming the
    first entry that was changed, deleted or moved, 2 when it cannot be read."""
    import redis

    from compliance.reports import audit_archive
    from compliance.reports.storage import StorageError

    known = [_anchor(a) for a in anchors]
    services = _services()
    # An archive pass moving entries out of Redis meanwhile would look like a gap: hold its lock.
    token = uuid.uuid4().hex
    try:
        if not services.audit.lock(token, 3600):
            raise CannotVerify("an archive pass is running; verify again once it is done")
        try:
            verdict = audit_archive.verify(services.audit, services.storage, known)
        finally:
            services.audit.unlock(token)
    except redis.RedisError as exc:
        raise CannotVerify(f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc
    except StorageError as exc:
        raise CannotVerify(f"report storage failed: {exc}") from exc
    finally:
        services.close()
    summary = {"ok": verdict.ok, "checked": verdict.checked, "segments": verdict.segments,
               "anchors": verdict.anchors, "last_seq": verdict.last_seq,
               "last_hash": verdict.last_link}
    if verdict.problem is not None:
        problem = verdict.problem
        summary.update(bad_seq=problem.seq, where=problem.where, reason=problem.reason)
        click.echo(str(problem), err=True)
        click.echo(json.dumps(summary, sort_keys=True))
        raise SystemExit(1)
    click.echo(f"audit chain intact: {verdict.checked} entries ({verdict.segments} archived "
               f"segments), ends at {verdict.last_seq}:{verdict.last_link}", err=True)
    click.echo(json.dumps(summary, sort_keys=True))


@audit.command()
@click.option("--older-than", default=None,
              help="Archive entries older than this (e.g. 1h, 7d; default: "
                   "COMPLIANCE_AUDIT_REDIS_SECONDS).")
def archive(older_than: str | None) -> None:
    """Move old entries from Redis to the report storage in segments, then anchor the chain's
    end there. Prints a JSON summary."""

    from compliance.reports import audit_archive
    from compliance.reports.storage import StorageError

    services = _services()
    age = parse_duration(older_than)
    if age is None:
        age = services.settings.audit_redis_seconds
    try:
        result = audit_archive.archive(services.audit, services.storage, before=time.time() - age,
                                       segment_entries=services.settings.audit_segment_entries)
    except StorageError as exc:
        raise click.ClickException(f"report storage failed: {exc}") from exc
    finally:
        services.close()
    click.echo(json.dumps(result.as_dict(), sort_keys=True))


@audit.command("list")
@click.option("--tenant", default=None, help="Only this tenant's entries ('default': the default "
                                             "tenant's).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def list_(tenant: str | None, limit: int) -> None:
    """Entries still in Redis, newest first, one JSON object a line."""

    from compliance.store.audit import DEFAULT_TENANT

    services = _services()
    try:
        page = services.audit.page(tenant=None if tenant == DEFAULT_TENANT else tenant,
                                   every_tenant=tenant is None, limit=limit)
    finally:
        services.close()
    for entry in page.items:
        click.echo(json.dumps(entry.as_json(), ensure_ascii=False))
