"""Injectables as ``Annotated`` aliases, so route signatures read like plain types."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from compliance.api.errors import APIError
from compliance.api.services import Services
from compliance.settings import Settings


def get_services(request: Request) -> Services:
    """The process's services (built in the lifespan)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    """The settings the app was built with."""
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _matches(presented: str, keys: list[str]) -> bool:
    # Compare against every key, so timing does not reveal which one is close.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def _require(settings: Settings, presented: str | None, *, admin: bool) -> None:
    if settings.dev_mode:
        return
    admin_keys = [k.get_secret_value() for k in settings.admin_api_keys]
    allowed = admin_keys if admin else admin_keys + [
        k.get_secret_value() for k in settings.producer_api_keys]
    if not presented:
        raise APIError(401, "unauthorized", "an API key is required (X-API-Key header)",
                       headers={"WWW-Authenticate": "Bearer"})
    if not _matches(presented, allowed):
        raise APIError(403, "forbidden",
                       "this API key may not call admin endpoints" if admin else "unknown API key")


def require_producer(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Producer or admin key."""
    _require(settings, _presented_key(x_api_key, authorization), admin=False)


def require_admin(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Admin key only."""
    _require(settings, _presented_key(x_api_key, authorization), admin=True)


ProducerAuth = Depends(require_producer)
AdminAuth = Depends(require_admin)
