"""The operator's one settings class; every value comes from a ``COMPLIANCE_OPERATOR_`` variable."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from compliance.settings import split_list


class OperatorSettings(BaseSettings):
    """Configuration of ``kopf run -m compliance_operator.main`` (and ``compliance operator``)."""

    model_config = SettingsConfigDict(env_prefix="COMPLIANCE_OPERATOR_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # --- kopf ----------------------------------------------------------------------------------
    # Namespaces to watch (comma-separated); empty watches all namespaces (needs a ClusterRole).
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Peering object name shared by the replicas of one operator; only one of them acts (HA).
    peering_name: str = "compliance-operator"
    # Run without peering (single replica, tests, local runs).
    standalone: bool = False
    # kopf peering priority of this process. Unset: a random one in 1..2**31 per process, so among
    # replicas exactly one (the highest) acts; kopf pauses *every* operator while two live ones
    # share a priority. Set it only to rank replicas by hand (a debug run with a higher one wins).
    peering_priority: int | None = None
    # Seconds a replica that vanished without leaving the peering (SIGKILL, node loss) keeps the
    # others paused (kopf's peering lifetime; a clean exit hands over at once).
    peering_lifetime_seconds: int = Field(default=60, ge=5)
    # Liveness endpoint served by kopf (empty disables it).
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    # Do not list/watch namespaces and CRDs: serve only the exact names in `namespaces`
    # (for RBAC without namespaces list/watch, and for API stand-ins that cannot list them).
    scanning_disabled: bool = False
    # Log level of the operator process.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- Kubernetes API ----------------------------------------------------------------------------
    # Timeout of one Kubernetes API call made by the operator's k8s module, seconds.
    api_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- autoscaling ------------------------------------------------------------------------------------
    # Socket timeout of Redis reads (queue length, unacked, breakers), seconds.
    redis_timeout_seconds: float = Field(default=3.0, gt=0)
    # The service's COMPLIANCE_BREAKER_RESET_TIMEOUT: open breakers older than this count as half-open.
    breaker_reset_timeout: float = Field(default=60.0, gt=0)
    # Closed breakers updated within this many seconds count as "known destinations" for the share.
    breaker_active_window_seconds: float = Field(default=3600.0, gt=0)
    # Annotate worker pods with controller.kubernetes.io/pod-deletion-cost before scaling down.
    deletion_cost_enabled: bool = True
    # Seconds to wait for Celery workers to answer `inspect active/reserved/scheduled`.
    inspect_timeout_seconds: float = Field(default=1.0, gt=0)

    # --- DLQ replay Jobs -----------------------------------------------------------------------------------
    # Service image run by replay Jobs unless the DeadLetterReplay names one.
    replay_image: str = "ghcr.io/compliance-reporting/compliance-reporting:0.1.0"
    # imagePullPolicy of the replay container.
    replay_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # ServiceAccount of replay pods unless the CR names one (empty: the namespace's default).
    replay_service_account: str = ""
    # Secrets whose keys become the replay container's env (COMPLIANCE_REDIS_URL, API keys, ...).
    replay_env_from_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # ConfigMaps whose keys become the replay container's env.
    replay_env_from_configmaps: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # CPU request of the replay container.
    replay_cpu_request: str = "50m"
    # Memory request of the replay container.
    replay_memory_request: str = "128Mi"
    # Memory limit of the replay container.
    replay_memory_limit: str = "256Mi"
    # UID the replay container runs as (the image's non-root user).
    replay_run_as_user: int = Field(default=10001, ge=1)

    _split = field_validator(
        "namespaces", "replay_env_from_secrets", "replay_env_from_configmaps", mode="before"
    )(split_list)
