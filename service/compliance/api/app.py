"""The FastAPI app factory: ``uvicorn --factory compliance.api.app:create_app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

from compliance import __version__
from compliance.api import console, errors, fleet
from compliance.api.health import HealthCheck, HealthChecker
from compliance.api.http_metrics import HTTPMetrics
from compliance.api.limits import BodySizeLimit
from compliance.api.root_path import RootPath
from compliance.api.routes import audit, breakers, dead_letters, health, reports, tenants, webhooks
from compliance.api.security_headers import SecurityHeaders
from compliance.observability import metrics
from compliance.observability.logs import configure_logging
from compliance.redis_client import check_eviction_policy
from compliance.settings import Settings
from compliance.wiring import Container

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    """Build the API; nothing connects until first use (the lifespan checks Redis once)."""
    settings = container.settings if container else (settings or Settings())
    problems = settings.api_problems()
    if problems:
        raise ValueError("; ".join(problems))
    configure_logging(settings.log_level, service="api")
    container = container or Container(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev_mode:
            log.warning("DEV MODE: API keys are not checked and loopback webhook targets are "
                        "allowed. Never run dev mode where others can reach it.")
        elif settings.allow_loopback_targets:
            log.warning("allow_loopback_targets is on: webhooks may target this host's loopback")
        try:
            warning = check_eviction_policy(container.redis)
            if warning:
                log.warning(warning)
        except Exception as exc:  # Redis may come up later; /health reports it meanwhile
            log.warning("redis not reachable at start", extra={"error": str(exc)})
        # Accepting webhooks runs on this event loop with its own client (no thread per request).
        app.state.aredis = container.async_redis()
        yield
        await app.state.aredis.aclose()
        container.close()

    # The interactive docs and the spec are public surface: served only when docs are on (dev).
    docs = settings.docs_on
    app = FastAPI(title="Compliance reporting service", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.container = container
    app.state.reports = report_clients = reports.build_reports(container)
    app.state.health = health_checks(container, report_clients)
    app.state.registry = metrics.process_registry()
    errors.install(app)
    for module in (webhooks, dead_letters, breakers, health, reports, tenants, audit):
        app.include_router(module.router)
    if settings.console_enabled:
        console.install(app)

    app.add_middleware(HTTPMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Correlation-ID",
                       update_request_header=True,
                       validator=valid_correlation_id)
    app.add_middleware(SecurityHeaders)  # the 413 of BodySizeLimit gets them too
    if settings.root_path:
        app.add_middleware(RootPath, root_path=settings.root_path)  # outermost: all see one path
    return app


def valid_correlation_id(value: str) -> bool:
    """A client's X-Correlation-ID is kept only if it can go out again as a header: printable
    ASCII, at most 128 characters. Anything else is replaced by a generated id (not refused)."""
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def health_checks(container: Container, report_clients: reports.Reports) -> HealthChecker:
    """What ``/health`` reports; only Redis decides readiness (accepting work needs nothing
    else), while a storage or facade outage makes ``/health`` unhealthy but keeps the pod in
    its Service."""
    checker = HealthChecker(cache_seconds=container.settings.health_cache_seconds)
    checker.register(HealthCheck("redis", lambda: fleet.redis_probe(container),
                                 critical=True, ready=True))
    checker.register(HealthCheck("celery", lambda: fleet.celery_probe(container),
                                 cached=True, timeout=5.0, needs_redis=True))
    checker.register(HealthCheck("circuit_breakers", lambda: fleet.breakers_probe(container),
                                 needs_redis=True))
    checker.register(HealthCheck("queues", lambda: fleet.queue_probe(container),
                                 needs_redis=True))
    checker.register(HealthCheck("facade", lambda: report_clients.need_facade().health(),
                                 critical=True, cached=True, timeout=10.0))
    checker.register(HealthCheck("storage", lambda: report_clients.need_storage().probe(),
                                 critical=True, cached=True, timeout=10.0))
    return checker
