"""Serving under a path prefix (``COMPLIANCE_ROOT_PATH``, the chart's Ingress path).

FastAPI's ``root_path`` argument is deprecated and uvicorn's ``--root-path`` expects the proxy to
strip the prefix. This middleware accepts both kinds of proxy: a request for
``{root}/console`` (prefix kept) or ``/console`` (prefix stripped) reaches the same route, and
``url_for`` and the console's links carry the prefix. It follows the ASGI convention that
``scope["path"]`` includes ``scope["root_path"]``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The path below the root path (what routes match)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class RootPath:
    """Pure ASGI middleware: sets the root path and prefixes a stripped path with it."""

    def __init__(self, app: ASGIApp, *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.root_path:
            path: str = scope.get("path", "")
            root = self.root_path
            if path != root and not path.startswith(f"{root}/"):
                path = f"{root}{path}"
            scope = {**scope, "root_path": root, "path": path}
        await self.app(scope, receive, send)
