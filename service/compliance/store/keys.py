"""Redis key names. The first two are the seed's contract; index keys must not match them."""

STATUS_PREFIX = "webhook_status:"
DEAD_LETTER_PREFIX = "dead_letter:webhook:"
# Sorted-set indexes, one per status (score: time of the last status change, epoch seconds); a
# record is in its status's index only, and a listing of every status merges the four.
STATUS_INDEX_BY = "compliance:index:statuses:"
# The index of every status that releases before the per-destination cap kept; deleted on sight.
LEGACY_STATUS_INDEX_ALL = "compliance:index:statuses"
DEAD_LETTER_INDEX = "compliance:index:dead_letters"
REPLAY_CLAIM_PREFIX = "compliance:replay_claim:"
# Durable delivery: one hash per live webhook (envelope, lease, run count) that expires with its
# status record, and two sorted sets of webhook ids: due later (score: due time) and signalled or
# taken by a worker (score: when the lease lapses and the sweeper signals it again).
WEBHOOK_PREFIX = "compliance:webhook:"
DUE_INDEX = "compliance:schedule:due"
LEASE_INDEX = "compliance:schedule:leased"
# Ids a worker's Celery thread popped and handed to the delivery engine beside it (a list the
# engine's take reads first; each id keeps its signal lease meanwhile).
HANDED_LIST = "compliance:schedule:handed"
# The send time of the newest delivery signal a worker has claimed (the ready list is FIFO).
CLAIMED_SIGNAL_MARK = "compliance:schedule:claimed_signal"
BREAKER_PREFIX = "compliance:breaker:"
BREAKER_INDEX = "compliance:index:breakers"
# Breakers not closed (score: when each last opened), so counts by state and the open ones are
# read without walking every breaker.
BREAKER_NOT_CLOSED_INDEX = "compliance:index:breakers:not_closed"
# The fleet-wide cap on requests in flight per destination: one sorted set of slot holders per
# destination (score: when the slot lapses), one of the webhooks parked until a slot frees
# (score: when parked, so they leave in order), and the destinations with parked webhooks
# (score: when the sweeper looks at them again, in case no slot release did).
INFLIGHT_PREFIX = "compliance:inflight:"
PARKED_PREFIX = "compliance:parked:"
PARKED_INDEX = "compliance:index:parked"
# Fair shares between tenants. Live (queued or scheduled) webhooks per tenant, for its cap (score:
# when accepted, so entries of records that expired unsettled are pruned), and its submission
# rate's theoretical arrival time (GCRA). The fair backlog: delivery signals waiting for room on
# the short delivery list, scored by virtual time so that tenants take turns (start-time fair
# queueing), with each tenant's last tag and the clock (the tag of the last signal let out).
TENANT_LIVE_PREFIX = "compliance:tenant_live:"
TENANT_RATE_PREFIX = "compliance:tenant_rate:"
FAIR_BACKLOG = "compliance:fair:backlog"
FAIR_TAGS = "compliance:fair:tags"
FAIR_CLOCK = "compliance:fair:clock"
# Keys of the default tenant (tenant None: keys from COMPLIANCE_PRODUCER_API_KEYS).
DEFAULT_TENANT_TAG = "-"
# Report records (JSON, with a TTL) and the run counter that bounds redeliveries of a report task.
REPORT_PREFIX = "compliance:report:"
REPORT_RUNS_PREFIX = "compliance:report_runs:"
# Reports not settled yet (score: when their task is presumed lost and sent again): kombu's
# BRPOP can lose a report task the way it could lose a delivery message.
REPORT_LEASE_INDEX = "compliance:schedule:reports"
# Written just before the API's WAIT for replicas (see compliance.store.replication).
REPLICATION_FENCE = "compliance:replication:fence"
# Every report record by creation time, for the console's list (pruned as records expire).
REPORT_INDEX = "compliance:index:reports"
# The audit trail (compliance.store.audit): entries in one stream (ID "{seq}-0"), the chain's end
# (a hash: last sequence number, its link hash, last archived), one index stream of sequence
# numbers per tenant (the default tenant's apart), the set of those index keys, and the lock of
# the one archiver at a time.
AUDIT_LOG = "compliance:audit:log"
AUDIT_HEAD = "compliance:audit:head"
AUDIT_TENANT_INDEX = "compliance:index:audit:tenant:"
AUDIT_DEFAULT_INDEX = "compliance:index:audit:default"
AUDIT_INDEXES = "compliance:index:audit:indexes"
AUDIT_ARCHIVE_LOCK = "compliance:audit:archive_lock"
# Console sessions (JSON with a sliding TTL), keyed by the SHA-256 of the cookie's token.
CONSOLE_SESSION_PREFIX = "compliance:console_session:"


def status_key(webhook_id: str) -> str:
    """Key of a webhook's status record."""
    return f"{STATUS_PREFIX}{webhook_id}"


def status_index(status: str) -> str:
    """Index of one status."""
    return f"{STATUS_INDEX_BY}{status}"


def dead_letter_key(webhook_id: str) -> str:
    """Key of a webhook's dead-letter entry."""
    return f"{DEAD_LETTER_PREFIX}{webhook_id}"


def breaker_key(destination: str) -> str:
    """Hash holding one destination's circuit breaker."""
    return f"{BREAKER_PREFIX}{destination}"


def inflight_key(destination: str) -> str:
    """Sorted set of the webhooks holding one of a destination's in-flight slots."""
    return f"{INFLIGHT_PREFIX}{destination}"


def parked_key(destination: str) -> str:
    """Sorted set of the webhooks waiting for one of a destination's slots."""
    return f"{PARKED_PREFIX}{destination}"


def report_key(report_id: str) -> str:
    """Key of a report's record."""
    return f"{REPORT_PREFIX}{report_id}"


def webhook_key(webhook_id: str) -> str:
    """Hash holding a live webhook's envelope, lease and run count."""
    return f"{WEBHOOK_PREFIX}{webhook_id}"


def tenant_tag(tenant: str | None) -> str:
    """A tenant's name in keys (the default tenant is ``-``)."""
    return DEFAULT_TENANT_TAG if tenant is None else tenant


def tenant_live_key(tenant: str | None) -> str:
    """Sorted set of a tenant's live webhooks (score: when accepted)."""
    return f"{TENANT_LIVE_PREFIX}{tenant_tag(tenant)}"


def tenant_rate_key(tenant: str | None) -> str:
    """A tenant's submission-rate state (the GCRA's theoretical arrival time)."""
    return f"{TENANT_RATE_PREFIX}{tenant_tag(tenant)}"
# Tenants (see compliance.store.tenants): one hash per tenant, their index, each producer key's
# record under the SHA-256 of the key, each tenant's key ids, and its encrypted signing secrets.
TENANT_PREFIX = "compliance:tenant:"
TENANT_INDEX = "compliance:index:tenants"
TENANT_KEY_PREFIX = "compliance:tenant_key:"
TENANT_KEYS_PREFIX = "compliance:tenant_keys:"
TENANT_SECRETS_PREFIX = "compliance:tenant_secrets:"
# Per-tenant listings, written only for webhooks of a named tenant (the default tenant's are
# the global indexes): status indexes ({tenant}:{status}, as STATUS_INDEX_BY), dead letters,
# reports, and the destinations (scheme://host:port) the tenant has sent to (score: last use).
TENANT_STATUS_INDEX_PREFIX = "compliance:index:tenant_statuses:"
TENANT_DEAD_LETTER_INDEX_PREFIX = "compliance:index:tenant_dead_letters:"
TENANT_REPORT_INDEX_PREFIX = "compliance:index:tenant_reports:"
TENANT_DESTINATIONS_PREFIX = "compliance:index:tenant_destinations:"


def tenant_key(tenant_id: str) -> str:
    """Hash of one tenant (name, created_at, disabled)."""
    return f"{TENANT_PREFIX}{tenant_id}"


def tenant_api_key(digest: str) -> str:
    """Record of one tenant producer key, under the key's SHA-256."""
    return f"{TENANT_KEY_PREFIX}{digest}"


def tenant_keys_key(tenant_id: str) -> str:
    """Hash of a tenant's key ids (to their digests)."""
    return f"{TENANT_KEYS_PREFIX}{tenant_id}"


def tenant_secrets_key(tenant_id: str) -> str:
    """A tenant's encrypted signing secrets (JSON)."""
    return f"{TENANT_SECRETS_PREFIX}{tenant_id}"


def tenant_status_index(tenant_id: str, status: str) -> str:
    """Index of one status of one tenant."""
    return f"{TENANT_STATUS_INDEX_PREFIX}{tenant_id}:{status}"


def tenant_dead_letter_index(tenant_id: str) -> str:
    """Index of one tenant's dead letters (score: failure time)."""
    return f"{TENANT_DEAD_LETTER_INDEX_PREFIX}{tenant_id}"


def tenant_report_index(tenant_id: str) -> str:
    """Index of one tenant's reports (score: creation time)."""
    return f"{TENANT_REPORT_INDEX_PREFIX}{tenant_id}"


def tenant_destinations(tenant_id: str) -> str:
    """Destinations one tenant has sent to (score: last submission)."""
    return f"{TENANT_DESTINATIONS_PREFIX}{tenant_id}"
