"""``compliance tenant create|list|delete|disable|enable``, ``compliance tenant key
create|revoke``, ``compliance tenant secret rotate``: tenant administration straight on Redis
(the same store as ``/tenants``). A key or a secret is printed once, when it is made.

API processes see a revoked key, or a disabled or deleted tenant, within
``COMPLIANCE_TENANT_KEY_CACHE_SECONDS``; workers sign with a new secret within
``COMPLIANCE_TENANT_SECRET_CACHE_SECONDS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from compliance.cli.dlq import _services, parse_duration
from compliance.store.tenants import KEY_ID_PATTERN, TENANT_ID_PATTERN

if TYPE_CHECKING:
    from compliance.store.tenants import TenantStore


def _check(pattern: str, what: str) -> Callable[[click.Context, click.Parameter, str], str]:
    def check(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
        if not re.fullmatch(pattern.strip("^$"), value):
            raise click.BadParameter(f"{value!r} is not a {what}")
        return value
    return check


TENANT_ARG = click.argument("tenant_id", callback=_check(TENANT_ID_PATTERN, "tenant id (ten_...)"))


def _run(action: Callable[[TenantStore], Any], *, audited: str | None = None,
         tenant_id: str | None = None,
         detail: Callable[[Any], dict[str, Any]] | None = None) -> Any:
    """Run ``action`` on the tenant store; a change that took place (a truthy result) is
    recorded in the audit trail as ``audited``, by ``system:cli``."""

    from compliance.store.audit import SYSTEM_CLI
    from compliance.store.tenants import NotFound, TenancyUnavailable

    container = _services()
    try:
        result = action(container.tenant_store)
        if audited is not None and result:
            tenant = tenant_id if tenant_id is not None else result[0].tenant_id
            container.audit.record(actor=SYSTEM_CLI, action=audited, tenant=tenant,
                                   target=tenant, detail=detail(result) if detail else None)
        return result
    except TenancyUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    except NotFound as exc:
        raise click.ClickException(f"no tenant {exc}") from exc
    finally:
        container.close()


def _emit(as_json: bool, data: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data))
    else:
        for line in lines:
            click.echo(line)


@click.group()
def tenant() -> None:
    """Tenants: their producer keys and signing secrets."""


@tenant.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def create(name: str, as_json: bool) -> None:
    """Create a tenant; prints its id and its first signing secret (shown once)."""
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
        raise click.BadParameter("a name of 1 to 200 printable characters", param_hint="NAME")
    created, issued = _run(lambda store: store.create(name), audited="tenant.create",
                           detail=lambda r: {"secret_id": r[1].secret_id})
    _emit(as_json, {"tenant_id": created.tenant_id, "name": created.name,
                    "secret_id": issued.secret_id, "secret": issued.secret},
          [f"tenant_id: {created.tenant_id}", f"name: {created.name}",
           f"signing secret ({issued.secret_id}, shown once): {issued.secret}"])


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(as_json: bool) -> None:
    """Every tenant with its key ids and secret ids (never keys or secrets)."""
    tenants = _run(lambda store: store.all())
    for t in tenants:
        if as_json:
            click.echo(t.model_dump_json())
            continue
        state = "disabled" if t.disabled else "active"
        keys = ",".join(k.key_id for k in t.keys) or "-"
        secrets = ",".join(s.secret_id for s in t.secrets) or "-"
        click.echo(f"{t.tenant_id}  {state:8}  keys={keys}  secrets={secrets}  {t.name}")
    if not tenants and not as_json:
        click.echo("no tenants", err=True)


@tenant.command("delete")
@TENANT_ARG
def delete(tenant_id: str) -> None:
    """Delete a tenant and its keys (its queued webhooks are still delivered, signed)."""
    if not _run(lambda store: store.delete(tenant_id), audited="tenant.delete",
                tenant_id=tenant_id):
        raise click.ClickException(f"no tenant {tenant_id}")
    click.echo(f"deleted {tenant_id}")


@tenant.command("disable")
@TENANT_ARG
def disable(tenant_id: str) -> None:
    """Refuse the tenant's keys until it is enabled again."""
    if not _run(lambda store: store.set_disabled(tenant_id, True), audited="tenant.disable",
                tenant_id=tenant_id):
        raise click.ClickException(f"no tenant {tenant_id}")
    click.echo(f"disabled {tenant_id}")


@tenant.command("enable")
@TENANT_ARG
def enable(tenant_id: str) -> None:
    """Accept the tenant's keys again."""
    if not _run(lambda store: store.set_disabled(tenant_id, False), audited="tenant.enable",
                tenant_id=tenant_id):
        raise click.ClickException(f"no tenant {tenant_id}")
    click.echo(f"enabled {tenant_id}")


@tenant.group("key")
def key() -> None:
    """A tenant's producer keys."""


@key.command("create")
@TENANT_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def key_create(tenant_id: str, as_json: bool) -> None:
    """Issue a producer key (printed once; only its SHA-256 is kept)."""
    key_id, value = _run(lambda store: store.issue_key(tenant_id), audited="tenant.key.issue",
                         tenant_id=tenant_id, detail=lambda r: {"key_id": r[0]})
    _emit(as_json, {"key_id": key_id, "key": value},
          [f"key_id: {key_id}", f"key (shown once): {value}"])


@key.command("revoke")
@TENANT_ARG
@click.argument("key_id", callback=_check(KEY_ID_PATTERN, "key id (key_...)"))
def key_revoke(tenant_id: str, key_id: str) -> None:
    """Revoke one of a tenant's keys."""
    if not _run(lambda store: store.revoke_key(tenant_id, key_id), audited="tenant.key.revoke",
                tenant_id=tenant_id, detail=lambda _: {"key_id": key_id}):
        raise click.ClickException(f"tenant {tenant_id} has no key {key_id}")
    click.echo(f"revoked {key_id}")


@tenant.group("secret")
def secret() -> None:
    """A tenant's signing secrets."""


@secret.command("rotate")
@TENANT_ARG
@click.option("--overlap", default=None, metavar="DURATION",
              help="How long the current secrets keep signing beside the new one (e.g. 1h, "
                   "7d; default COMPLIANCE_TENANT_SECRET_OVERLAP_SECONDS).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def secret_rotate(tenant_id: str, overlap: str | None, as_json: bool) -> None:
    """Add a signing secret (printed once); the old ones sign until their expires_at."""
    seconds = parse_duration(overlap)

    def rotate(store: TenantStore) -> Any:
        from compliance.settings import Settings

        chosen = seconds if seconds is not None else Settings().tenant_secret_overlap_seconds
        return store.rotate_secret(tenant_id, overlap_seconds=chosen)

    issued = _run(rotate, audited="tenant.secret.rotate", tenant_id=tenant_id,
                  detail=lambda r: {"secret_id": r.secret_id,
                                    "previous_expire_at": repr(r.previous_expire_at)})
    _emit(as_json, {"secret_id": issued.secret_id, "secret": issued.secret,
                    "created_at": issued.created_at, "expires_at": issued.previous_expire_at},
          [f"secret_id: {issued.secret_id}", f"secret (shown once): {issued.secret}",
           f"previous secrets sign until: {issued.previous_expire_at}"])
