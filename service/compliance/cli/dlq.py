"""``compliance dlq list|show|replay``: the dead-letter queue from a shell or a Kubernetes Job."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from compliance.store.dead_letters import DeadLetterFilter

if TYPE_CHECKING:  # importing the service stack here would load prometheus_client too early
    from compliance.wiring import Container

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | None) -> float | None:
    """``90``, ``15m``, ``2h``, ``7d`` -> seconds; raises click.BadParameter."""
    if value is None:
        return None
    text = value.strip().lower()
    unit = DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration like 90, 15m, 2h or 7d") from None
    if seconds < 0:
        raise click.BadParameter("durations cannot be negative")
    return seconds


def selector_options(fn: click.decorators.FC) -> click.decorators.FC:
    """The filters shared by list and replay."""
    for option in reversed([
        click.option("--error-type", help="Only this error type (http_5xx, timeout, circuit_open, ...)."),
        click.option("--destination", help="Only destinations starting with this URL prefix."),
        click.option("--older-than", help="Only entries that failed at least this long ago (e.g. 1h)."),
        click.option("--newer-than", help="Only entries that failed at most this long ago (e.g. 7d)."),
    ]):
        fn = option(fn)
    return fn


def _selector(error_type: str | None, destination: str | None, older_than: str | None,
              newer_than: str | None) -> DeadLetterFilter:
    return DeadLetterFilter(error_type=error_type, destination=destination,
                            older_than_seconds=parse_duration(older_than),
                            newer_than_seconds=parse_duration(newer_than))


def _services() -> Container:
    # Imported here, not at the top: the service stack loads prometheus_client, which must not
    # be imported before `compliance worker` sets its multiprocess directory (same CLI).
    from pydantic import ValidationError

    from compliance.settings import Settings
    from compliance.wiring import Container

    try:
        return Container(Settings())
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from exc


def _bad_actor(value: object) -> str:
    raise click.BadParameter(f"{value!r}: a system actor starts with 'system:' (at most 128 "
                             "characters); key ids are for API callers")


@click.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


@dlq.command("list")
@selector_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(error_type: str | None, destination: str | None, older_than: str | None,
          newer_than: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    services = _services()
    entries = services.dead_letters.page(_selector(error_type, destination, older_than, newer_than),
                                         limit=limit)
    for entry in entries:
        if as_json:
            click.echo(entry.model_dump_json())
        else:
            click.echo(f"{entry.webhook_id}  {entry.error_type:<12}  {len(entry.attempts)} attempts  "
                       f"{entry.destination}  {entry.error[:80]}")
    if not as_json:
        click.echo(f"{len(entries)} shown, {services.dead_letters.size()} in the DLQ", err=True)


@dlq.command()
@click.argument("webhook_id")
def show(webhook_id: str) -> None:
    """Print one dead letter as JSON."""
    entry = _services().dead_letters.get(webhook_id)
    if entry is None:
        raise click.ClickException(f"no dead letter for {webhook_id}")
    click.echo(json.dumps(entry.model_dump(mode="json"), indent=2))


@dlq.command()
@selector_options
@click.option("--id", "ids", multiple=True, help="Replay this webhook id (repeatable).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--rate", type=click.FloatRange(min=0.01), default=None,
              help="At most this many replays per second.")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@click.option("--termination-log", type=click.Path(path_type=Path), default=None,
              help="Also write the JSON summary here (Kubernetes: /dev/termination-log).")
@click.option("--actor", default="system:cli", show_default=True, callback=lambda _c, _p, v: (
    v if isinstance(v, str) and v.startswith("system:") and len(v) <= 128
    else _bad_actor(v)),
              help="Who the audit trail names for these replays (a system: name; e.g. the "
                   "DeadLetterReplay resource that runs the Job).")
def replay(error_type: str | None, destination: str | None, older_than: str | None,
           newer_than: str | None, ids: tuple[str, ...], limit: int, rate: float | None,
           dry_run: bool, termination_log: Path | None, actor: str) -> None:
    """Re-enqueue dead letters with their webhook ids and a fresh attempt budget.

    Prints a JSON summary on the last line: matched, replayed, skipped, failed.
    """
    services = _services()
    if ids:
        counts = {"matched": len(ids), "replayed": 0, "skipped": 0, "failed": 0}
        for webhook_id in tqdm(ids, desc="replay", file=sys.stderr, disable=dry_run):
            if dry_run:
                continue
            outcome = services.submitter.replay(webhook_id, actor=actor)
            counts["replayed" if outcome.value == "replayed" else "skipped"] += 1
        summary = {**counts, "dry_run": dry_run}
    else:
        selector = _selector(error_type, destination, older_than, newer_than)
        total = min(limit, services.dead_letters.size())
        with tqdm(total=total, desc="replay", file=sys.stderr, disable=dry_run) as bar:
            result = services.submitter.replay_many(
                selector, limit=limit, dry_run=dry_run, actor=actor, rate_per_second=rate,
                on_progress=lambda _: bar.update(1))
        summary = {"matched": result.matched, "replayed": result.replayed,
                   "skipped": result.skipped, "failed": result.failed, "dry_run": dry_run}
        for error in result.errors[:20]:
            click.echo(f"error: {error}", err=True)
    line = json.dumps(summary, sort_keys=True)
    if termination_log:
        try:
            termination_log.write_text(line)
        except OSError as exc:
            click.echo(f"warning: could not write {termination_log}: {exc}", err=True)
    click.echo(line)
    services.close()
    if summary["failed"]:
        raise SystemExit(2)
