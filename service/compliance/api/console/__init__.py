"""The operations console: HTML pages under ``/console``, served by the API process."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from compliance.api.console import admin, views
from compliance.api.console.pages import STATIC_DIR, install_handlers


def install(app: FastAPI) -> None:
    """Mount the console's pages and its static files (script, style) on ``app``."""
    install_handlers(app)
    app.include_router(views.router)
    app.include_router(admin.router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
