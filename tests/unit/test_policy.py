"""The retry policy as a table: every status class, transport errors, Retry-After, jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from compliance.delivery import policy
from compliance.delivery.policy import ErrorType


@pytest.mark.parametrize(
    ("code", "delivered", "retryable", "breaker", "error_type"),
    [
        (200, True, False, False, None),
        (201, True, False, False, None),
        (204, True, False, False, None),
        (299, True, False, False, None),
        (301, False, False, False, ErrorType.REDIRECT),
        (302, False, False, False, ErrorType.REDIRECT),
        (307, False, False, False, ErrorType.REDIRECT),
        (308, False, False, False, ErrorType.REDIRECT),
        (400, False, False, False, ErrorType.HTTP_4XX),
        (401, False, False, False, ErrorType.HTTP_4XX),
        (403, False, False, False, ErrorType.HTTP_4XX),
        (404, False, False, False, ErrorType.HTTP_4XX),
        (409, False, False, False, ErrorType.HTTP_4XX),
        (410, False, False, False, ErrorType.HTTP_4XX),
        (422, False, False, False, ErrorType.HTTP_4XX),
        (408, False, True, False, ErrorType.THROTTLED),
        (425, False, True, False, ErrorType.THROTTLED),
        (429, False, True, False, ErrorType.THROTTLED),
        (500, False, True, True, ErrorType.HTTP_5XX),
        (502, False, True, True, ErrorType.HTTP_5XX),
        (503, False, True, True, ErrorType.HTTP_5XX),
        (504, False, True, True, ErrorType.HTTP_5XX),
        (599, False, True, True, ErrorType.HTTP_5XX),
    ],
)
def test_status_classes(code, delivered, retryable, breaker, error_type):
    outcome = policy.classify_status(code)
    assert (outcome.delivered, outcome.retryable, outcome.counts_as_breaker_failure,
            outcome.error_type) == (delivered, retryable, breaker, error_type)


@pytest.mark.parametrize(
    ("error", "retryable", "breaker"),
    [
        (ErrorType.TIMEOUT, True, True),
        (ErrorType.CONNECTION, True, True),
        (ErrorType.TLS, True, True),
        (ErrorType.VALIDATION, False, False),
        (ErrorType.INTERNAL, False, False),
    ],
)
def test_transport_errors(error, retryable, breaker):
    outcome = policy.classify_error(error)
    assert not outcome.delivered
    assert (outcome.retryable, outcome.counts_as_breaker_failure) == (retryable, breaker)


@pytest.mark.parametrize(
    ("attempts_made", "retryable", "action"),
    [
        (1, True, "retry"),
        (2, True, "retry"),
        (3, True, "retry"),
        (4, True, "dead_letter"),  # first attempt + 3 retries used up
        (1, False, "dead_letter"),
    ],
)
def test_at_most_three_retries(attempts_made, retryable, action):
    outcome = policy.Outcome(False, retryable, retryable, ErrorType.HTTP_5XX)
    assert policy.decide(outcome, attempts_made=attempts_made, max_retries=3,
                         delay_if_retry=1.0).action == action


def test_delivered_wins():
    outcome = policy.classify_status(200)
    assert policy.decide(outcome, attempts_made=9, max_retries=3, delay_if_retry=1).action == "delivered"


@pytest.mark.parametrize("retry_number", [1, 2, 3, 4, 8])
def test_full_jitter_bounds(retry_number):
    rng = random.Random(7)
    ceiling = min(60.0, 2.0 * 2 ** (retry_number - 1))
    samples = [policy.backoff_seconds(retry_number, base=2.0, cap=60.0, rng=rng) for _ in range(500)]
    assert all(0 <= s <= ceiling for s in samples)
    # full jitter spreads over the whole window, not just near the ceiling
    assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9


def test_retry_after_seconds_and_date():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert policy.parse_retry_after("120", now=now) == 120
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert policy.parse_retry_after(later, now=now) == pytest.approx(90)
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert policy.parse_retry_after(past, now=now) == 0
    assert policy.parse_retry_after("soon", now=now) is None
    assert policy.parse_retry_after("", now=now) is None
    assert policy.parse_retry_after(None, now=now) is None


class FixedJitter(random.Random):
    """An rng whose ``uniform`` always lands at the same fraction of the window."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


BACKOFF = 8.0  # retry 1 with base 10: the jitter window is [0, 10], FixedJitter(0.8) lands at 8


@pytest.mark.parametrize(
    ("code", "retry_after", "expected"),
    [
        (429, 30.0, 30.0),  # honoured: longer than the backoff
        (503, 30.0, 30.0),
        (429, 5000.0, 100.0),  # clamped below the visibility timeout
        (429, 0.0, BACKOFF),  # can only delay, never shorten the backoff
        (503, 2.0, BACKOFF),
        (429, None, BACKOFF),  # no usable header
        (500, 30.0, BACKOFF),  # ignored on other codes
        (408, 30.0, BACKOFF),
        (None, 30.0, BACKOFF),  # transport error: no status
    ],
)
def test_retry_after_only_delays_and_is_clamped(code, retry_after, expected):
    assert policy.backoff_seconds(1, base=10.0, cap=60.0, rng=FixedJitter(0.8)) == BACKOFF
    delay = policy.retry_delay(retry_number=1, status_code=code, retry_after=retry_after,
                               base=10.0, cap=60.0, retry_after_cap=100.0, rng=FixedJitter(0.8))
    assert delay == pytest.approx(expected)


def test_deferral_waits_for_reopen_plus_jitter():
    rng = random.Random(3)
    delays = [policy.deferral_delay(open_remaining=40, jitter_cap=6, rng=rng) for _ in range(100)]
    assert all(40 <= d <= 46 for d in delays)
    assert len({round(d, 3) for d in delays}) > 50
