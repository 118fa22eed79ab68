"""Structured JSON errors for every 4xx, and a last-resort 500 that leaks nothing."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error with a status, a stable code and a message for the client."""

    def __init__(
        self, status_code: int, code: str, message: str, *,
        details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


class ErrorInfo(BaseModel):
    """What went wrong: a stable code, a message, and per-field details when there are some."""

    code: str = Field(description="Stable, machine-readable: validation_error, not_found, ...")
    message: str
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Absent unless there is more to say, e.g. the offending fields.")


class ErrorBody(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    error: ErrorInfo


ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "No API key (X-API-Key or Authorization: Bearer).",
    403: "The API key is unknown, or may not call this route (admin routes).",
    404: "Not found (unknown or expired).",
    409: "Conflict: the resource is busy or not ready; retry after Retry-After.",
    413: "The body is larger than COMPLIANCE_MAX_BODY_BYTES (or a document over its own limit).",
    422: "Validation error; `details` names the fields.",
    429: "This tenant is at its cap of queued webhooks or over its submission rate; retry after "
         "Retry-After (other tenants are not affected).",
    431: "The request head is over COMPLIANCE_MAX_HEADER_BYTES or COMPLIANCE_MAX_HEADER_COUNT.",
    503: "Redis, storage or the facade is unavailable, or the queue is full; retry after "
         "Retry-After.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers a route can give, in the error shape (431
    always: the server answers it for any route)."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]}
            for code in sorted({*codes, 431})}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this request's path."""
    methods: set[str] = set()
    scope = {**request.scope, "method": "_"}
    routes = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)  # an included router (no prefix)
        if included is not None:
            routes.extend(included.routes)
            continue
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) spelled as ``\\udXXX``, so
    an error that quotes client input can always be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message", "details"?}}``; any quoted client
    text is made encodable first (a field name may be a client's key)."""
    body: dict[str, Any] = {"code": code, "message": printable(message)}
    if details:
        body["details"] = _clean(details)
    return {"error": body}


def field_error(field: str, message: str) -> APIError:
    """A 422 naming the offending field."""
    return APIError(422, "validation_error", f"{field}: {message}",
                    details=[{"field": field, "message": message}])


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", ""),
             "type": err.get("type", "")}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(error_body("validation_error", summary or "invalid request", details),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot read (bytes that are not UTF-8): a validation
            # error like any other malformed JSON, so the spec's 422 covers it.
            message = "the body is not UTF-8 encoded JSON"
            return JSONResponse(error_body("validation_error", f"body: {message}",
                                           [{"field": "body", "message": message}]),
                                status_code=422)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                403: "forbidden", 413: "payload_too_large"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path served
            # by several routes (GET and POST /tenants) allows all of theirs.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(redis.RedisError)
    async def _redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        # Nothing was accepted: the client may safely retry the same request later.
        log.error("redis unavailable", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse(error_body("redis_unavailable", "storage is unavailable; retry later"),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(error_body("internal_error", "the service could not complete the request"),
                            status_code=500)
