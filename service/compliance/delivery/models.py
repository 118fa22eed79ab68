"""The message a delivery task carries from attempt to attempt."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from compliance.store.records import Attempt


class Envelope(BaseModel):
    """Everything one delivery needs; retries carry it forward with the history so far."""

    webhook_id: str
    url: str
    event: str
    payload: dict[str, Any]
    correlation_id: str | None = None
    report_id: str | None = None
    created_at: float = Field(default_factory=time.time)
    attempts: int = 0
    deferred_seconds: float = 0.0
    history: list[Attempt] = Field(default_factory=list)
    replay_count: int = 0
