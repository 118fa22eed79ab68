"""``compliance receiver``: a tiny webhook receiver for trying the service out (stdlib http.server).

It answers every POST with 200, prints each webhook's headers and body, and with ``--secret``
verifies the Standard Webhooks signature (401 when it does not match). Not for production: it
keeps nothing and trusts its network.
"""

from __future__ import annotations

import json
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 10 * 1024 * 1024
_print_lock = threading.Lock()


def verify(secrets: tuple[str, ...], body: bytes, headers: dict[str, str]) -> str | None:
    """None when one of ``secrets`` signed this body and headers, else why not."""
    problem = "no secret given"
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            return None
        except WebhookVerificationError as exc:
            problem = str(exc)
    return problem


def _out(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def make_handler(secrets: tuple[str, ...]) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``secrets`` (empty: no verification)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "compliance-receiver/1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            lines = [f"--- POST {self.path}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            try:
                lines.append(json.dumps(json.loads(body), indent=2, sort_keys=True))
            except ValueError:
                lines.append(body.decode(errors="replace"))
            status = HTTPStatus.OK
            if secrets:
                problem = verify(secrets, body, headers)
                if problem is None:
                    lines.append("signature: valid")
                else:
                    lines.append(f"signature: INVALID ({problem})")
                    status = HTTPStatus.UNAUTHORIZED
            _out("\n".join(lines))
            self._answer(status, {"received": status == HTTPStatus.OK})

        def do_GET(self) -> None:
            self._answer(HTTPStatus.OK, {"receiver": "compliance", "verifying": bool(secrets)})

        def _answer(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the one chosen is printed).")
@click.option("--secret", "secrets", multiple=True, metavar="whsec_...",
              help="Verify the Standard Webhooks signature with this secret (repeatable: rotation). "
                   "A POST whose signature matches none is answered 401.")
def receiver(host: str, port: int, secrets: tuple[str, ...]) -> None:
    """Receive webhooks: answer 200, print headers and body, verify signatures with --secret."""
    for secret in secrets:
        try:
            Webhook(secret)
        except Exception as exc:  # the library raises bare errors on a malformed secret
            raise click.BadParameter(f"not a webhook secret: {exc}", param_hint="--secret") from exc
    server = ThreadingHTTPServer((host, port), make_handler(secrets))
    bound_host, bound_port = server.server_address[:2]
    _out(f"listening on http://{bound_host!s}:{bound_port}/"
         f" ({'verifying signatures' if secrets else 'not verifying signatures'})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
