"""The FastAPI app factory: ``uvicorn --factory compliance.api.app:create_app``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI, Request, Response

from compliance import __version__
from compliance.api import errors
from compliance.api.health import HealthChecker
from compliance.api.limits import BodySizeLimit
from compliance.api.routes import breakers, dead_letters, health, webhooks
from compliance.api.services import Services
from compliance.observability import metrics
from compliance.observability.logs import configure_logging
from compliance.redis_client import check_eviction_policy
from compliance.settings import Settings

log = logging.getLogger(__name__)
Extension = Callable[[FastAPI, Services], None]


def create_app(settings: Settings | None = None, *, extensions: list[Extension] | None = None) -> FastAPI:
    """Build the API; clients are created in the lifespan, so building opens nothing."""
    settings = settings or Settings()
    configure_logging(settings.log_level, service="api")
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev_mode:
            log.warning("DEV MODE: API keys are not checked and loopback webhook targets are "
                        "allowed. Never run dev mode where others can reach it.")
        elif settings.allow_loopback_targets:
            log.warning("allow_loopback_targets is on: webhooks may target this host's loopback")
        try:
            warning = check_eviction_policy(services.redis)
            if warning:
                log.warning(warning)
        except Exception as exc:  # Redis may come up later; /health reports it meanwhile
            log.warning("redis not reachable at start", extra={"error": str(exc)})
        yield
        services.close()

    app = FastAPI(title="Compliance reporting service", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.health = HealthChecker(services)
    app.state.registry = metrics.process_registry()
    errors.install(app)
    for module in (webhooks, dead_letters, breakers, health):
        app.include_router(module.router)
    for extend in extensions or default_extensions():
        extend(app, services)

    @app.middleware("http")
    async def _http_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Correlation-ID",
                       update_request_header=True,
                       validator=valid_correlation_id)
    return app


def valid_correlation_id(value: str) -> bool:
    """A client's X-Correlation-ID is kept only if it can go out again as a header: printable
    ASCII, at most 128 characters. Anything else is replaced by a generated id (not refused)."""
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def default_extensions() -> list[Extension]:
    """Optional route groups (reports) that register themselves when present."""
    try:
        from compliance.reports.api import install as install_reports
    except ImportError:
        return []
    return [install_reports]


def _route_template(request: Request) -> str:
    # Label by route template, never by raw path, to keep metric cardinality bounded.
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))
