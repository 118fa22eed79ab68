"""Fair shares between tenants: the limits a tenant's submissions meet, and the decision.

The accept script (``store.schedule``) applies the decision atomically with the write; this is
its specification, as a pure function (tested against the script), and the one place the
limits of a tenant come from: today the settings' defaults, later a tenant record's overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compliance.settings import Settings
from compliance.store.schedule import Admission, Verdict

# A submission up to a microsecond early passes (the arrival time is kept to the microsecond).
RATE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class TenantLimits:
    """What one tenant may have queued and how fast it may submit.

    ``cap``: live (queued or scheduled) webhooks at most (0: no cap). ``rate``: submissions per
    second (0: unlimited), with ``burst`` of them at once.
    """

    cap: int = 0
    rate: float = 0.0
    burst: int = 1


def limits_for(settings: Settings, tenant: str | None,
               override: TenantLimits | None = None) -> TenantLimits:
    """A tenant's limits: its own (``override``, from its record) or the deployment's default
    (the default tenant, None, has a cap of its own: none unless configured)."""
    if override is not None:
        return override
    cap = (settings.default_tenant_max_live_webhooks if tenant is None
           else settings.tenant_max_live_webhooks)
    return TenantLimits(cap=cap, rate=settings.tenant_submit_rate,
                        burst=settings.tenant_submit_burst)


def decide(*, queued: int, most_queued: int, live: int, limits: TenantLimits, now: float,
           tat: float | None) -> tuple[Verdict, float | None]:
    """Admit one submission or not, and the rate's new theoretical arrival time.

    ``queued``: signals waiting fleet-wide (list and fair backlog); ``live``: the tenant's live
    webhooks; ``tat``: the rate's theoretical arrival time so far (None: none yet). The checks
    go in this order: the fleet's queue (503), the tenant's cap, its rate (429); a refused
    submission consumes nothing.
    """
    if most_queued > 0 and queued >= most_queued:
        return Verdict(Admission.OVERLOADED), tat
    if limits.cap > 0 and live >= limits.cap:
        return Verdict(Admission.TENANT_CAP), tat
    if limits.rate <= 0:
        return Verdict(Admission.ACCEPTED), tat
    arrival = max(tat or 0.0, now)
    ahead = arrival - now - (max(1, limits.burst) - 1) / limits.rate
    if ahead > RATE_TOLERANCE:
        return Verdict(Admission.TENANT_RATE, ahead), tat
    # kept in Redis to the microsecond
    return Verdict(Admission.ACCEPTED), round(arrival + 1 / limits.rate, 6)


def retry_after(verdict: Verdict, *, cap_retry_after: int) -> int:
    """Whole seconds for the ``Retry-After`` of a refusal: the rate's own wait (at least 1), or
    ``cap_retry_after`` for a tenant at its cap (its webhooks must be delivered first)."""
    if verdict.admission is Admission.TENANT_RATE:
        return max(1, math.ceil(verdict.wait))
    return cap_retry_after
