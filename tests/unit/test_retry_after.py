"""Retry-After comes from the receiver: whatever it sends, parsing never raises."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compliance.delivery import policy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [
    "²",                                          # isdigit() is true, float() refuses it
    "١٢٠",                                        # Arabic-Indic digits
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # a year datetime cannot hold
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "-5", "1.5", "3e9", "\x00", "Mon, 32 Foo 2026 99:99:99 GMT",
])
def test_hostile_retry_after_values_are_ignored_or_bounded(value: str) -> None:
    seconds = policy.parse_retry_after(value, now=NOW)
    assert seconds is None or seconds >= 0


def test_far_future_date_is_still_clamped_by_the_delay_policy() -> None:
    import random

    seconds = policy.parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=NOW)
    assert seconds is not None and seconds > 1e9
    delay = policy.retry_delay(retry_number=1, status_code=429, retry_after=seconds, base=1, cap=60,
                               retry_after_cap=300, rng=random.Random(1))
    assert delay == 300
