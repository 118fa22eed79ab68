"""The one settings class of the service processes (api, worker, dlq CLI).

Every value comes from a ``COMPLIANCE_``-prefixed environment variable. Defaults are the
production-safe ones; dev mode relaxes them explicitly and says so at start.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "admin", "password", "dev"}


def split_list(value: object) -> object:
    """Accept ``a,b,c`` (what people type) as well as a JSON list for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port); raises ValueError naming the problem."""
    host, sep, port_text = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port_text)


class Settings(BaseSettings):
    """Configuration of the API, the workers and the CLI."""

    # Never echo an input in a validation error: the inputs are API keys and signing secrets.
    model_config = SettingsConfigDict(env_prefix="COMPLIANCE_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # --- mode -----------------------------------------------------------------------------
    # Dev mode: no API keys required, loopback webhook targets allowed, placeholder secrets ok.
    dev_mode: bool = False
    # Log level for every process (JSON logs on stdout).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- redis ------------------------------------------------------------------------------
    # Redis URL: broker, status store, DLQ and breaker state all live here.
    redis_url: str = "redis://localhost:6379/0"
    # Connection pool size per process; must cover every thread that talks to Redis at once.
    redis_max_connections: int = Field(default=200, ge=4, le=10_000)
    # Socket timeout for Redis calls, seconds.
    redis_socket_timeout: float = Field(default=5.0, gt=0)
    # Redis Sentinel addresses (`host:port,host:port,...`). When set, every process asks these
    # sentinels for the current primary and follows a failover; the host and port of
    # `redis_url` are then ignored (its database number, user and password still apply).
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The master name the sentinels monitor (`sentinel monitor <name> ...`).
    redis_sentinel_master: str = Field(default="mymaster", min_length=1, max_length=200)
    # Password of the sentinels themselves (`requirepass` in sentinel.conf), when they need one.
    redis_sentinel_password: SecretStr | None = None
    # Replicas that must hold an accepted webhook or report before the API answers 202
    # (Redis WAIT after the record and its queue message are written; 0: do not wait).
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    # Milliseconds the API waits for those replicas; past it, the 202 is sent anyway (the record
    # is on the primary) and `redis_replica_wait_total{result="timeout"}` counts it.
    redis_wait_timeout_ms: int = Field(default=200, ge=1, le=10_000)

    # --- queues and celery (seed values, made safe) ------------------------------------------
    # Queue for report generation (CPU, long); `llen compliance-compliance_queue` counts it.
    queue_name: str = "compliance_queue"
    # Queue for webhook deliveries (I/O, short): signals naming the webhooks that are due.
    delivery_queue_name: str = "compliance_webhooks"
    # kombu global_keyprefix: every broker key starts with it.
    broker_key_prefix: str = "compliance-"
    # Prefork processes of the report worker (the seed's concurrency=4).
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    # Deliveries in flight per delivery worker process (with delivery_engine=pump, all of them in
    # the asyncio engine, beside one Celery thread that hands it what Celery's consumer pops;
    # with delivery_engine=threads, the thread pool's size).
    delivery_concurrency: int = Field(default=512, ge=1, le=4096)
    # Prefetch multiplier (seed: 1, FIFO and no hoarding).
    worker_prefetch_multiplier: int = Field(default=1, ge=1, le=16)
    # Hard time limit of a report task, seconds (seed: one hour).
    task_time_limit: int = Field(default=3600, ge=1)
    # Soft time limit of a report task; its handler marks the report failed before the hard kill.
    task_soft_time_limit: int = Field(default=3540, ge=1)
    # Hard time limit of one delivery attempt task, seconds.
    delivery_task_time_limit: int = Field(default=120, ge=1)
    # Broker visibility timeout: an unacked message is redelivered after this many seconds.
    broker_visibility_timeout: int = Field(default=7200, ge=1)
    # Seconds between a worker's sweeps for unacked messages past the visibility timeout.
    broker_restore_interval: int = Field(default=60, ge=1)
    # Seconds a busy worker keeps running tasks after SIGTERM before a cold shutdown requeues the
    # rest (Celery sleeps this long whenever tasks are active; the pod grace period must exceed it).
    worker_soft_shutdown_timeout: float = Field(default=30.0, ge=0)
    # Deliveries of one message beyond this count are treated as a poison message (DLQ).
    max_redeliveries: int = Field(default=5, ge=1)
    # Seconds a kombu restore lock may be held; a worker that died holding it blocks restores
    # fleet-wide only this long (kombu's default is 300).
    broker_unacked_mutex_expire: int = Field(default=30, ge=1)
    # Tasks a report worker process runs before it is replaced (0: never), against leaks.
    worker_max_tasks_per_child: int = Field(default=100, ge=0)
    # Resident KiB past which a report worker process is replaced after its task (0: never).
    worker_max_memory_per_child: int = Field(default=1_048_576, ge=0)

    # File a worker touches while its consumer, delivery engine and sweeper all turn; the
    # chart's liveness probe (`compliance worker-alive`) reads it.
    worker_heartbeat_file: Path = Path("/tmp/compliance-worker-alive")  # noqa: S108 - emptyDir
    # Seconds a part of a worker may stand still before liveness fails (a Redis outage excused).
    worker_liveness_seconds: float = Field(default=60.0, ge=5)

    # --- durable delivery (the stored record is the truth; queue messages are signals) -------
    # Seconds a delivery signal may wait in the queue before the sweeper assumes it was lost and
    # signals the webhook again (a duplicate signal is dropped by the worker that reads it).
    delivery_signal_timeout: float = Field(default=300.0, gt=0)
    # Seconds between a delivery worker's sweeps: due retries are signalled, lapsed leases
    # recovered. Also the precision of retry and deferral times.
    delivery_sweep_interval: float = Field(default=1.0, gt=0, le=60)
    # Webhooks signalled per sweep at most (the rest wait for the next sweep); also the most a
    # delivery engine takes off the queue in one round trip.
    delivery_sweep_batch: int = Field(default=500, ge=1, le=10_000)
    # How a delivery worker runs deliveries: `pump` (an asyncio engine takes signals in batches,
    # with one Celery thread beside it on the same queue) or `threads` (Celery's thread pool only).
    delivery_engine: Literal["pump", "threads"] = "pump"
    # Signals the delivery list holds before new ones wait in the fair backlog, from which the
    # list is fed in turns between tenants as it drains (0: no backlog, every signal goes
    # straight onto the list, first come first served). Another tenant's new webhook waits
    # behind about this many signals, not behind a whole backlog.
    fair_queue_depth: int = Field(default=256, ge=0, le=100_000)

    # --- status and DLQ retention (seed contract) --------------------------------------------
    # TTL of a `delivered` status record, seconds (30 min).
    status_ttl_delivered: int = Field(default=1800, ge=1)
    # TTL of a `pending`, `retrying` or `failed` status record, seconds (7 days).
    status_ttl_open: int = Field(default=604_800, ge=1)
    # TTL of a dead-letter entry, seconds (30 days).
    dead_letter_ttl: int = Field(default=2_592_000, ge=1)

    # --- retries ----------------------------------------------------------------------------
    # Retries after the first attempt (seed: 3).
    max_retries: int = Field(default=3, ge=0, le=10)
    # Base of the exponential backoff, seconds: retry n waits up to base * 2**(n-1) (full jitter).
    retry_base_seconds: float = Field(default=5.0, gt=0)
    # Cap of one backoff delay, seconds.
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # Cap on a receiver's Retry-After, seconds; must stay below the visibility timeout.
    retry_after_max_seconds: float = Field(default=1800.0, gt=0)

    # --- circuit breakers ----------------------------------------------------------------------
    # Consecutive counted failures that open a destination's breaker.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    # Seconds a breaker stays open before one half-open probe is let through.
    breaker_reset_timeout: float = Field(default=60.0, gt=0)
    # Total seconds a delivery may be deferred by open breakers before it is dead-lettered.
    breaker_max_deferral_seconds: float = Field(default=3600.0, ge=0)
    # Requests in flight to one destination (scheme, host and port) at most, across every worker
    # of the fleet; more wait, parked in order, for a slot (0: no cap).
    destination_max_in_flight: int = Field(default=50, ge=0, le=100_000)
    # After a destination's breaker closes again, its cap ramps up from one request in flight,
    # doubling every this many seconds (0: the whole cap at once).
    destination_ramp_seconds: float = Field(default=1.0, ge=0, le=600)
    # Seconds a breaker is kept after its last result (then it and its index entry go), so
    # destinations nobody calls any more do not pile up; must outlast a reset timeout and a probe.
    breaker_idle_ttl: float = Field(default=3600.0, ge=1)
    # Most destinations exported per state in `circuit_breaker_state` (only breakers that are not
    # closed are exported; `circuit_breakers{state=}` counts them all).
    metrics_max_breaker_series: int = Field(default=100, ge=0, le=10_000)

    # --- outbound HTTP (SSRF guard) --------------------------------------------------------------
    # Allow webhook targets on loopback (dev and tests only).
    allow_loopback_targets: bool = False
    # Refuse plain http targets.
    https_only: bool = False
    # Private networks (comma-separated CIDRs) webhook targets may be in, e.g. a cluster's pod and
    # Service ranges for in-cluster receivers. Empty: only public addresses (and loopback with
    # allow_loopback_targets). Cloud metadata and link-local addresses stay refused.
    allowed_target_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Ports a webhook target may use; empty means any port.
    allowed_ports: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [80, 443, 8080, 8443])
    # Connect timeout of one delivery, seconds.
    connect_timeout: float = Field(default=5.0, gt=0)
    # Read timeout of one delivery, seconds.
    read_timeout: float = Field(default=15.0, gt=0)
    # Bytes of a receiver's response body read at most.
    response_body_cap: int = Field(default=16_384, ge=0)

    # --- signing ---------------------------------------------------------------------------------
    # Standard Webhooks secrets (`whsec_...`); every listed secret signs, so rotation is seamless.
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # --- tenants -------------------------------------------------------------------------------
    # Fernet keys (URL-safe base64 of 32 bytes: `python -c "from cryptography.fernet import
    # Fernet; print(Fernet.generate_key().decode())"`) that encrypt tenants' signing secrets in
    # Redis. The first encrypts, every one decrypts: list a new key first to rotate. Empty: no
    # tenant can be created (the default tenant signs with webhook_secrets).
    tenant_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Seconds each API process keeps what it read of a tenant key (its tenant, disabled or not):
    # a revoked key, or a disabled or deleted tenant, is refused everywhere within this bound
    # (0: every request with a tenant key reads Redis once).
    tenant_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Seconds each worker keeps a tenant's signing secrets: a rotation is seen within this bound
    # (the new secret starts signing; an old one stops at its expires_at, or this long after
    # the rotation if that is later). Keep rotation overlaps longer than this.
    tenant_secret_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Seconds a rotated-out signing secret keeps signing beside the new one, by default (a
    # rotation may name its own); receivers have this long to switch.
    tenant_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=90 * 86_400)

    # --- API ------------------------------------------------------------------------------------
    # API keys for admin endpoints (cleanup, replay, breaker reset). Sent as `X-API-Key`.
    admin_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # API keys for producers (submitting reports and webhooks). Admin keys are accepted too.
    producer_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Largest accepted request body, bytes; larger gets 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Largest request head (request line and headers), bytes; larger gets 431.
    max_header_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)
    # Most header fields in one request; more gets 431.
    max_header_count: int = Field(default=100, ge=8, le=1000)
    # Queue length past which the API sheds load with 503 + Retry-After.
    max_queue_length: int = Field(default=10_000, ge=1)
    # Seconds the API suggests in Retry-After when it sheds load (503), or when a tenant is at
    # its cap of live webhooks (429).
    shed_retry_after_seconds: int = Field(default=30, ge=1)
    # Live (queued or scheduled: pending or retrying) webhooks one named tenant may have at
    # once; past it, that tenant's POST /webhooks and POST /reports get 429 (0: no cap). Below
    # max_queue_length, so that one tenant cannot fill the queue for every other.
    tenant_max_live_webhooks: int = Field(default=5000, ge=0)
    # The same cap for the default tenant (keys from COMPLIANCE_PRODUCER_API_KEYS). 0, no cap,
    # so an install without named tenants behaves as before (503 at max_queue_length only); set
    # it where named tenants share the install with environment keys.
    default_tenant_max_live_webhooks: int = Field(default=0, ge=0)
    # Submissions per second one tenant may make (webhooks and reports; 0: unlimited); past it,
    # 429 with the seconds until the next would pass.
    tenant_submit_rate: float = Field(default=0.0, ge=0)
    # Submissions a tenant may make at once within its rate (a burst, then one per 1/rate s).
    tenant_submit_burst: int = Field(default=100, ge=1)
    # Seconds slow /health probes (celery ping, storage probe) are cached.
    health_cache_seconds: float = Field(default=5.0, ge=0)
    # Seconds to wait for workers to answer the /health ping.
    health_celery_timeout: float = Field(default=1.0, gt=0)
    # Public base URL of the API, used for links in webhooks.
    public_base_url: str = "http://localhost:8000"
    # Page size cap for listings.
    max_page_size: int = Field(default=500, ge=1)
    # Serve /docs, /redoc and /openapi.json (unset: only in dev mode). Outside dev mode they are
    # public surface that no client needs.
    api_docs: bool | None = None
    # Deepest nesting of objects/arrays accepted in free-form JSON (webhook payload, report
    # evidence and metadata); deeper gets 422. At most 128: stored records and webhook envelopes
    # wrap it deeper, and pydantic reads JSON only ~200 levels deep (serializes 255).
    max_json_depth: int = Field(default=32, ge=1, le=128)
    # URL path prefix the API is served under behind a proxy (the Ingress path, e.g. /compliance;
    # empty: none). The console's links and cookie path start with it.
    root_path: str = Field(default="", max_length=200, pattern=r"^(/[A-Za-z0-9._~-]+)*$")

    # --- console ------------------------------------------------------------------------------
    # Serve the operations console (HTML pages under /console, signed in with an API key).
    console_enabled: bool = True
    # Seconds a console session lives without a request (each request starts it again).
    console_session_ttl: int = Field(default=3600, ge=60, le=86_400)

    # --- reports ------------------------------------------------------------------------------------
    # Import path of the ComplianceFacade implementation.
    facade_class: str = "compliance.reports.engine:BuiltinFacade"
    # Report storage backend.
    storage_backend: Literal["filesystem", "s3"] = "filesystem"
    # Directory of the filesystem storage backend.
    storage_dir: Path = Path("./data/reports")
    # S3 bucket of the s3 storage backend.
    s3_bucket: str = ""
    # Key prefix inside the S3 bucket.
    s3_prefix: str = "reports/"
    # Endpoint URL for S3-compatible servers (empty: AWS).
    s3_endpoint_url: str = ""
    # Largest evidence document accepted, bytes of JSON.
    max_evidence_bytes: int = Field(default=262_144, ge=1)
    # TTL of a report record in Redis, seconds (30 days); stored documents are kept by storage.
    report_ttl: int = Field(default=2_592_000, ge=60)
    # Largest client metadata echoed in report webhooks, bytes of JSON.
    max_metadata_bytes: int = Field(default=4096, ge=2)

    # --- audit trail (docs/audit.md) ----------------------------------------------------------------
    # Append every delivery outcome (delivered, failed) to the audit trail, in the delivery's own
    # commit (no round trip of its own; about 250 bytes of Redis each until archived). Admin and
    # tenant actions are always recorded.
    audit_deliveries: bool = True
    # Seconds audit entries stay in Redis at least; older ones are moved to the report storage
    # (under audit/) in segments by `compliance audit archive`, which `compliance cleanup` (the
    # chart's retention CronJob, daily) runs. Redis holds this much plus the time between two runs
    # (with the defaults, 1 to 25 hours of entries).
    audit_redis_seconds: int = Field(default=3600, ge=60)
    # Entries per archived segment at most (one gzip'd JSON-lines object each).
    audit_segment_entries: int = Field(default=50_000, ge=100, le=1_000_000)

    # --- metrics --------------------------------------------------------------------------------------
    # Port of a worker's Prometheus endpoint (0 disables it).
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    # Address a worker's Prometheus endpoint binds to: 0.0.0.0 (every interface) lets Prometheus
    # scrape the pod IP; 127.0.0.1 keeps it to a sidecar or `kubectl port-forward`. It needs no
    # key, so restrict who reaches the port (the chart's NetworkPolicy).
    worker_metrics_host: str = Field(default="0.0.0.0", min_length=1, max_length=255)  # noqa: S104

    _split = field_validator(
        "allowed_ports", "webhook_secrets", "admin_api_keys", "producer_api_keys",
        "redis_sentinels", "tenant_encryption_keys", "allowed_target_networks", mode="before"
    )(split_list)

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            parse_address(address)  # raises ValueError with the reason
        return addresses

    @field_validator("tenant_encryption_keys")
    @classmethod
    def _fernet(cls, encryption_keys: list[SecretStr]) -> list[SecretStr]:
        """Each key must be a Fernet key (never echoed)."""
        for key in encryption_keys:
            try:
                Fernet(key.get_secret_value().encode())
            except (ValueError, TypeError) as exc:
                raise ValueError("tenant encryption keys must be Fernet keys (URL-safe base64 "
                                 "of 32 bytes)") from exc
        return encryption_keys

    @field_validator("allowed_target_networks")
    @classmethod
    def _cidrs(cls, cidrs: list[str]) -> list[str]:
        import ipaddress

        try:
            return [str(ipaddress.ip_network(c, strict=False)) for c in cidrs]
        except ValueError as exc:
            raise ValueError(f"allowed_target_networks: {exc}") from exc

    @field_validator("webhook_secrets")
    @classmethod
    def _whsec(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        import binascii

        from standardwebhooks.webhooks import Webhook

        for secret in secrets:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("webhook secrets must be in whsec_<base64> form")
            try:
                Webhook(secret.get_secret_value())
            except (binascii.Error, ValueError, RuntimeError, Exception) as exc:
                raise ValueError("webhook secret is not valid base64 after whsec_") from exc
        return secrets

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("task_soft_time_limit must be below task_time_limit")
        longest_wait = max(
            self.retry_max_seconds,
            self.retry_after_max_seconds,
            self.breaker_reset_timeout * 2,
        )
        longest_task = max(self.task_time_limit, self.delivery_task_time_limit)
        if self.broker_visibility_timeout <= longest_task + longest_wait:
            raise ValueError(
                "broker_visibility_timeout must exceed the longest task time limit plus the "
                f"longest retry countdown ({longest_task} + {longest_wait:.0f} s), or Redis "
                "redelivers tasks that are still running or waiting"
            )
        if self.delivery_engine == "threads" and self.redis_max_connections < self.delivery_concurrency + 8:
            raise ValueError(
                "with delivery_engine=threads, redis_max_connections must cover "
                "delivery_concurrency plus headroom "
                f"(>= {self.delivery_concurrency + 8}), or delivery threads queue for connections"
            )
        probe_lease = self.connect_timeout + self.read_timeout + 5
        if self.breaker_idle_ttl <= self.breaker_reset_timeout + probe_lease:
            raise ValueError(
                "breaker_idle_ttl must exceed breaker_reset_timeout plus one probe "
                f"({self.breaker_reset_timeout + probe_lease:.0f} s), or an open breaker could be "
                "forgotten before its probe reports")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be at least retry_base_seconds")
        # Keys given are checked whichever process reads them; whether they are required is
        # each process's own question (api_problems, signing_problems).
        for key in [*self.admin_api_keys, *self.producer_api_keys]:
            value = key.get_secret_value()
            if not self.dev_mode and (len(value) < 16 or value.lower() in PLACEHOLDER_KEYS):
                raise ValueError("API keys must be at least 16 characters and not placeholders")
        return self

    def api_problems(self) -> list[str]:
        """What the API process needs and lacks (the workers, Celery CLI and operator do not)."""
        if self.dev_mode or (self.admin_api_keys and self.producer_api_keys):
            return []
        return ["COMPLIANCE_ADMIN_API_KEYS and COMPLIANCE_PRODUCER_API_KEYS are required outside "
                "dev mode (set COMPLIANCE_DEV_MODE=true for a local trial)"]

    def signing_problems(self) -> list[str]:
        """What a delivering process needs and lacks: a secret to sign webhooks with."""
        if self.dev_mode or self.webhook_secrets:
            return []
        return ["COMPLIANCE_WEBHOOK_SECRETS is required outside dev mode"]

    @property
    def docs_on(self) -> bool:
        """Are the interactive docs and the spec served? (``api_docs``, else dev mode)"""
        return self.dev_mode if self.api_docs is None else self.api_docs

    @property
    def delivery_lease_seconds(self) -> float:
        """How long a worker holds a webhook it took: longer than one attempt can last (the
        task's time limit, which the thread pool does not enforce, and the sender's own exchange
        deadline, which it does), plus a margin."""
        return float(max(self.delivery_task_time_limit, self.connect_timeout + self.read_timeout) + 5)

    @cached_property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``redis_sentinels`` as (host, port) pairs (empty: plain Redis at ``redis_url``)."""
        return [parse_address(address) for address in self.redis_sentinels]

    @cached_property
    def broker_queue_key(self) -> str:
        """Redis list that holds waiting report tasks."""
        return f"{self.broker_key_prefix}{self.queue_name}"

    @cached_property
    def delivery_queue_key(self) -> str:
        """Redis list that holds waiting delivery tasks."""
        return f"{self.broker_key_prefix}{self.delivery_queue_name}"

    def ttl_for_status(self, status: str) -> int:
        """TTL in seconds of a status record in ``status``."""
        return self.status_ttl_delivered if status == "delivered" else self.status_ttl_open
