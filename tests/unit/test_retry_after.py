"""Retry-After comes from the receiver: whatever it sends, parsing never raises."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compliance.delivery import policy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


# Each value has exactly one right answer. Retry-After is HTTP-date / delay-seconds, and
# delay-seconds is 1*DIGIT (ASCII): signs, fractions, exponents and other scripts' digits are not
# delay-seconds, so they are ignored (None), never read as some number. A date in the past means
# "now" (0.0); a date datetime cannot hold is ignored.
FAR_FUTURE = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - NOW).total_seconds()


@pytest.mark.parametrize(("value", "expected"), [
    ("²", None),                                          # isdigit() is true, float() refuses it
    ("١٢٠", None),                                        # Arabic-Indic digits: not ASCII DIGIT
    ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),  # a year datetime cannot hold
    ("Fri, 31 Dec 9999 23:59:59 GMT", FAR_FUTURE),        # honoured as given; the policy clamps it
    ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),               # long past: retry now, never negative
    ("-5", None),
    ("1.5", None),
    ("3e9", None),
    ("\x00", None),
    ("Mon, 32 Foo 2026 99:99:99 GMT", None),
    ("", None),
    ("   ", None),
    # the well-formed neighbours, so "ignored" above is not just "everything is None"
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("Sat, 28 Nov 2026 12:01:30 GMT", 90.0),
    ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),
])
def test_hostile_retry_after_values_are_ignored_or_bounded(value: str, expected: float | None) -> None:
    seconds = policy.parse_retry_after(value, now=NOW)
    if expected is None:
        assert seconds is None
    else:
        assert seconds == expected
        assert isinstance(seconds, float)


def test_far_future_date_is_still_clamped_by_the_delay_policy() -> None:
    import random

    seconds = policy.parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=NOW)
    assert seconds is not None and seconds > 1e9
    delay = policy.retry_delay(retry_number=1, status_code=429, retry_after=seconds, base=1, cap=60,
                               retry_after_cap=300, rng=random.Random(1))
    assert delay == 300
