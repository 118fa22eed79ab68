"""Pure decisions of the delivery engine: what an outcome means and when to try again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum


class ErrorType(StrEnum):
    """Why an attempt did not deliver; kept in statuses and dead letters."""

    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    THROTTLED = "throttled"  # 408, 425, 429
    REDIRECT = "redirect"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TLS = "tls"
    VALIDATION = "validation"  # URL refused by the SSRF guard or malformed
    CIRCUIT_OPEN = "circuit_open"
    POISON = "poison"  # redelivered by the broker too many times
    INTERNAL = "internal"


RETRYABLE_4XX = frozenset({408, 425, 429})
RETRY_AFTER_CODES = frozenset({429, 503})


@dataclass(frozen=True)
class Outcome:
    """The classified result of one attempt."""

    delivered: bool
    retryable: bool
    counts_as_breaker_failure: bool
    error_type: ErrorType | None = None


def classify_status(code: int) -> Outcome:
    """Map an HTTP status to an outcome (2xx delivered; 3xx never followed and final)."""
    if 200 <= code < 300:
        return Outcome(delivered=True, retryable=False, counts_as_breaker_failure=False)
    if code >= 500:
        return Outcome(False, True, True, ErrorType.HTTP_5XX)
    if code in RETRYABLE_4XX:
        # A throttle is the receiver working as designed: retry, but do not trip the breaker.
        return Outcome(False, True, False, ErrorType.THROTTLED)
    if 300 <= code < 400:
        return Outcome(False, False, False, ErrorType.REDIRECT)
    return Outcome(False, False, False, ErrorType.HTTP_4XX)


def classify_error(error_type: ErrorType) -> Outcome:
    """Outcome of an attempt that got no HTTP status."""
    transport = {ErrorType.TIMEOUT, ErrorType.CONNECTION, ErrorType.TLS}
    if error_type in transport:
        return Outcome(False, True, True, error_type)
    return Outcome(False, False, False, error_type)


def backoff_seconds(retry_number: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(retry_number-1))] for retry 1, 2, ..."""
    ceiling = min(cap, base * (2 ** max(0, retry_number - 1)))
    return rng.uniform(0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when unusable.

    The header comes from the receiver, so anything goes: non-ASCII digits ("²" passes
    ``isdigit``), dates past year 9999, garbage. None of it may raise.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_delay(
    *,
    retry_number: int,
    status_code: int | None,
    retry_after: float | None,
    base: float,
    cap: float,
    retry_after_cap: float,
    rng: random.Random,
) -> float:
    """Delay before retry ``retry_number``: jittered backoff, lengthened (never shortened) by a
    Retry-After on 429/503, clamped below the broker visibility timeout."""
    delay = backoff_seconds(retry_number, base=base, cap=cap, rng=rng)
    if status_code in RETRY_AFTER_CODES and retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay


class Action(StrEnum):
    """The step after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Decision:
    """What to do after an attempt: done, retry after ``delay`` seconds, or dead-letter."""

    action: Action
    delay: float = 0.0


def decide(
    outcome: Outcome,
    *,
    attempts_made: int,
    max_retries: int,
    delay_if_retry: float,
) -> Decision:
    """Next step after ``attempts_made`` attempts (including this one)."""
    if outcome.delivered:
        return Decision(Action.DELIVERED)
    if outcome.retryable and attempts_made <= max_retries:
        return Decision(Action.RETRY, delay_if_retry)
    return Decision(Action.DEAD_LETTER)


def deferral_delay(*, open_remaining: float, jitter_cap: float, rng: random.Random) -> float:
    """Wait until an open breaker may half-open, plus jitter so deferred work does not stampede."""
    return max(0.0, open_remaining) + rng.uniform(0, jitter_cap)
