"""The fair-share decision, pure: the fleet's queue, then the tenant's cap, then its rate."""

from __future__ import annotations

import pytest

from compliance.delivery.fairshare import TenantLimits, decide, limits_for, retry_after
from compliance.settings import Settings
from compliance.store.schedule import Admission, Verdict


def test_the_fleets_queue_is_checked_first_then_the_cap_then_the_rate() -> None:
    limits = TenantLimits(cap=2, rate=1.0, burst=1)
    verdict, _ = decide(queued=10, most_queued=10, live=5, limits=limits, now=0.0, tat=100.0)
    assert verdict.admission is Admission.OVERLOADED
    verdict, _ = decide(queued=0, most_queued=10, live=2, limits=limits, now=0.0, tat=100.0)
    assert verdict.admission is Admission.TENANT_CAP
    verdict, _ = decide(queued=0, most_queued=10, live=1, limits=limits, now=0.0, tat=100.0)
    assert verdict.admission is Admission.TENANT_RATE


def test_no_limits_admit_everything() -> None:
    verdict, tat = decide(queued=10**6, most_queued=0, live=10**6, limits=TenantLimits(),
                          now=5.0, tat=None)
    assert verdict.accepted and tat is None


def test_the_rate_lets_a_burst_through_then_one_per_interval() -> None:
    limits = TenantLimits(rate=2.0, burst=3)  # one every 0.5 s, three at once
    now, tat = 1000.0, None
    for _ in range(3):
        verdict, tat = decide(queued=0, most_queued=0, live=0, limits=limits, now=now, tat=tat)
        assert verdict.accepted
    refused, same = decide(queued=0, most_queued=0, live=0, limits=limits, now=now, tat=tat)
    assert refused.admission is Admission.TENANT_RATE and same == tat  # nothing consumed
    assert refused.wait == pytest.approx(0.5)
    verdict, _ = decide(queued=0, most_queued=0, live=0, limits=limits, now=now + 0.5, tat=tat)
    assert verdict.accepted
    # an idle tenant earns its burst back, not more
    again = now + 60
    for _ in range(3):
        verdict, tat = decide(queued=0, most_queued=0, live=0, limits=limits, now=again, tat=tat)
        assert verdict.accepted
    assert not decide(queued=0, most_queued=0, live=0, limits=limits, now=again, tat=tat)[0].accepted


def test_retry_after_is_the_rates_wait_rounded_up_or_the_caps_setting() -> None:
    assert retry_after(Verdict(Admission.TENANT_RATE, 0.2), cap_retry_after=30) == 1
    assert retry_after(Verdict(Admission.TENANT_RATE, 2.01), cap_retry_after=30) == 3
    assert retry_after(Verdict(Admission.TENANT_CAP), cap_retry_after=30) == 30


def test_a_tenants_own_limits_replace_the_defaults() -> None:
    settings = Settings(dev_mode=True, tenant_max_live_webhooks=7, tenant_submit_rate=3.0,
                        tenant_submit_burst=9)
    assert limits_for(settings, "ten_a") == TenantLimits(cap=7, rate=3.0, burst=9)
    own = TenantLimits(cap=1)
    assert limits_for(settings, "ten_a", own) is own


def test_the_default_tenant_has_no_cap_unless_one_is_set() -> None:
    """An install without named tenants behaves as before: environment keys meet only the
    fleet's max_queue_length."""
    assert limits_for(Settings(dev_mode=True), None).cap == 0
    assert limits_for(Settings(dev_mode=True), "ten_a").cap == 5000
    assert limits_for(Settings(dev_mode=True, default_tenant_max_live_webhooks=40), None).cap == 40
