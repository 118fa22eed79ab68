"""Safe response headers: ``X-Content-Type-Options: nosniff`` on every answer, and a strict
``Content-Security-Policy`` on report documents and every HTML page (a report's content comes
from client evidence, so its HTML must not run or load anything)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compliance.api.root_path import route_path

# Report HTML has one inline <style> and nothing else to load.
STRICT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'; sandbox")
# The interactive docs (dev mode only) load Swagger UI / ReDoc from their CDN.
DOCS_CSP = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src data: https://fastapi.tiangolo.com; "
            "connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers unless a route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)  # below COMPLIANCE_ROOT_PATH, when one is set
        report_content = path.startswith("/reports/") and path.endswith("/content")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                content_type = dict(headers).get(b"content-type", b"").lower()
                if b"content-security-policy" not in names and (
                        report_content or content_type.startswith(b"text/html")):
                    csp = DOCS_CSP if path in DOCS_PATHS else STRICT_CSP
                    headers.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
