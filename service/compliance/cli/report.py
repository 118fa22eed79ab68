"""``compliance report submit|show``: reports through the HTTP API.

The CLI talks to the API rather than to Redis and storage: it gets the same validation, URL
check, load shedding and correlation ids as any client, and needs only a URL and a key.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

FINAL = {"completed", "failed"}


def make_client(api_url: str, api_key: str | None, timeout: float) -> httpx.Client:
    """The HTTP client (tests swap this for the app's TestClient)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=api_url, headers=headers, timeout=timeout)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the API: {exc}") from exc
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise click.ClickException(f"HTTP {response.status_code}: {message}")
    return response


def _echo(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _parse_metadata(items: tuple[str, ...]) -> dict[str, str]:
    metadata = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--metadata")
        metadata[key] = value
    return metadata


@click.group()
@click.option("--api-url", envvar="COMPLIANCE_API_URL", default="http://127.0.0.1:8000",
              show_default=True, help="Base URL of the API (env COMPLIANCE_API_URL).")
@click.option("--api-key", envvar="COMPLIANCE_API_KEY", default=None,
              help="Producer or admin key (env COMPLIANCE_API_KEY); not needed in dev mode.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds per HTTP request.")
@click.pass_context
def report(ctx: click.Context, api_url: str, api_key: str | None, timeout: float) -> None:
    """Submit compliance reports and look at them."""
    ctx.obj = make_client(api_url, api_key, timeout)
    ctx.call_on_close(ctx.obj.close)


@report.command()
@click.option("--framework", required=True, help="Framework id (see `compliance report frameworks`).")
@click.option("--subject", required=True, help="What is assessed, e.g. an account name.")
@click.option("--evidence", "evidence_file", required=True, type=click.File("rb"),
              help="JSON file with the evidence object ('-' for stdin).")
@click.option("--webhook-url", required=True, help="Where report.completed / report.failed goes.")
@click.option("--metadata", multiple=True, help="key=value echoed in the webhook (repeatable).")
@click.option("--wait/--no-wait", default=False, help="Poll until the report is settled.")
@click.option("--wait-timeout", default=600.0, show_default=True, type=click.FloatRange(min=0))
@click.pass_obj
def submit(client: httpx.Client, framework: str, subject: str, evidence_file: Any, webhook_url: str,
           metadata: tuple[str, ...], wait: bool, wait_timeout: float) -> None:
    """Queue a report; prints report id, webhook id and correlation id."""
    try:
        evidence = json.load(evidence_file)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--evidence") from exc
    body = {"framework": framework, "subject": subject, "evidence": evidence,
            "webhook_url": webhook_url, "metadata": _parse_metadata(metadata)}
    accepted = _call(client, "POST", "/reports", json=body).json()
    _echo(accepted)
    if wait:
        record = _wait(client, accepted["report_id"], wait_timeout)
        _echo(record)
        if record["status"] != "completed":
            sys.exit(1)


def _wait(client: httpx.Client, report_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = _call(client, "GET", f"/reports/{report_id}").json()
        if record["status"] in FINAL:
            return record
        if time.monotonic() > deadline:
            raise click.ClickException(f"report {report_id} still {record['status']} after {timeout} s")
        time.sleep(0.5)


@report.command()
@click.argument("report_id")
@click.option("--content", is_flag=True, help="Print the report document instead of the record.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "html"]), default="json",
              show_default=True, help="Document format (with --content).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the document to this file.")
@click.pass_obj
def show(client: httpx.Client, report_id: str, content: bool, fmt: str, output: Path | None) -> None:
    """Show a report's status and summary, or its document with --content."""
    if not content:
        _echo(_call(client, "GET", f"/reports/{report_id}").json())
        return
    text = _call(client, "GET", f"/reports/{report_id}/content", params={"format": fmt}).text
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))


@report.command()
@click.pass_obj
def frameworks(client: httpx.Client) -> None:
    """List the frameworks and their controls."""
    for framework in _call(client, "GET", "/frameworks").json()["frameworks"]:
        click.echo(f"{framework['id']}  {framework['title']} (v{framework['version']}, "
                   f"{len(framework['controls'])} controls)")
        for control in framework["controls"]:
            click.echo(f"  {control['id']:<8} {control['severity']:<8} {control['title']}")
