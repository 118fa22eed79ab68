"""Records kept in Redis, as the contract in DESIGN.md describes them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_serializer


class Status(StrEnum):
    """Lifecycle of one webhook; ``failed`` is final and has a dead-letter entry."""

    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class Attempt(BaseModel):
    """One delivery attempt, as kept in the status record and the dead-letter entry."""

    at: float
    status_code: int | None = None
    error_type: str
    message: str = ""
    duration_seconds: float = 0.0


class WebhookStatus(BaseModel):
    """``webhook_status:{id}``: what happened to a webhook, without its payload."""

    webhook_id: str
    report_id: str | None = None
    destination: str
    event: str
    status: Status
    attempts: int = 0
    last_error: str | None = None
    last_error_type: str | None = None
    last_status_code: int | None = None
    next_attempt_at: float | None = None
    created_at: float
    updated_at: float
    correlation_id: str | None = None
    # The tenant that submitted it; None is the default tenant (keys from the environment).
    tenant: str | None = None
    # Every attempt of a webhook that needed more than one (time, HTTP status, error type,
    # duration, message), for the console's detail view; a first-try delivery keeps none (its
    # time is updated_at). Bounded by max_retries + 1; a replay starts it over.
    history: list[Attempt] | None = None

    @field_serializer("created_at", "updated_at", "next_attempt_at")
    def _millis(self, value: float | None) -> float | None:
        """Times to the millisecond: the record is kept for every webhook, so bytes count."""
        return None if value is None else round(value, 3)


class DeadLetter(BaseModel):
    """``dead_letter:webhook:{id}``: everything needed to understand and replay a failure."""

    webhook_id: str
    report_id: str | None = None
    destination: str
    event: str
    payload: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    error_type: str
    error: str
    correlation_id: str | None = None
    created_at: float
    failed_at: float
    replay_count: int = 0
    tenant: str | None = None


@dataclass(frozen=True)
class BreakerState:
    """A breaker as listed by the API and exported as a metric."""

    destination: str
    state: str
    failures: int
    opened_at: float | None
    times_opened: int
    updated_at: float | None


@dataclass(frozen=True)
class Scope:
    """Whose records a read may see: every tenant's (an admin), or one tenant's (``tenant``
    None: the default tenant, whose keys come from the environment)."""

    everyone: bool = False
    tenant: str | None = None

    def allows(self, tenant: str | None) -> bool:
        """A record of ``tenant`` is visible."""
        return self.everyone or tenant == self.tenant


EVERYONE = Scope(everyone=True)


STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
