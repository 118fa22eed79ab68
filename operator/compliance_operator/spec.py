"""A WorkerAutoscaler custom resource, parsed once into a typed spec that carries its defaults.

The defaults are the CRD's (manifests/crds/workerautoscalers.reporting.compliance.io.yaml); the API
server fills them in, and these apply only to an object stored before a default existed or read
from somewhere that did not go through the API server. tests/operator/test_spec.py keeps the two
in step. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from compliance_operator.policy import ScalePolicy

DEFAULT_POLLING_INTERVAL_SECONDS = 15.0
DEFAULT_KEY_PREFIX = "compliance-"
DEFAULT_REDIS_URL_KEY = "COMPLIANCE_REDIS_URL"
DEFAULT_SAMPLE_SIZE = 200


@dataclass(frozen=True)
class AutoscalerSpec:
    """One WorkerAutoscaler: which object it is, what it scales, where it reads, how it decides."""

    namespace: str
    name: str
    target: str  # the worker Deployment (same namespace)
    queue: str
    secret_name: str  # the Secret holding the Redis URL
    policy: ScalePolicy
    generation: int | None = None
    secret_key: str = DEFAULT_REDIS_URL_KEY
    key_prefix: str = DEFAULT_KEY_PREFIX
    polling_interval: float = DEFAULT_POLLING_INTERVAL_SECONDS
    sample_size: int = DEFAULT_SAMPLE_SIZE  # no longer used: the backlog share is counted exactly
    paused: bool = False
    body: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # events' target

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AutoscalerSpec:
        """Parse the custom resource (KeyError/ValueError/TypeError when a required field is bad)."""
        meta, spec = body["metadata"], body["spec"]
        redis_ref = spec["redis"]
        secret = redis_ref["secretRef"]
        behavior = spec.get("behavior") or {}
        up = behavior.get("scaleUp") or {}
        down = behavior.get("scaleDown") or {}
        breakers = spec.get("breakerPolicy") or {}
        generation = meta.get("generation")
        return cls(
            namespace=str(meta["namespace"]), name=str(meta["name"]),
            generation=None if generation is None else int(generation),
            target=str(spec["scaleTargetRef"]["name"]), queue=str(spec["queue"]),
            secret_name=str(secret["name"]), secret_key=str(secret.get("key", DEFAULT_REDIS_URL_KEY)),
            key_prefix=str(redis_ref.get("keyPrefix", DEFAULT_KEY_PREFIX)),
            polling_interval=float(spec.get("pollingIntervalSeconds", DEFAULT_POLLING_INTERVAL_SECONDS)),
            sample_size=int(breakers.get("sampleSize", DEFAULT_SAMPLE_SIZE)),
            paused=bool(spec.get("paused", False)),
            policy=ScalePolicy(
                min_replicas=int(spec.get("minReplicas", 1)), max_replicas=int(spec["maxReplicas"]),
                target_per_replica=int(spec.get("targetTasksPerReplica", 10)),
                up_window=float(up.get("stabilizationWindowSeconds", 0)),
                up_max_step=int(up.get("maxStep", 4)),
                down_window=float(down.get("stabilizationWindowSeconds", 300)),
                down_max_step=int(down.get("maxStep", 1)),
                breaker_enabled=bool(breakers.get("enabled", True)),
                open_share_threshold=float(breakers.get("openShareThreshold", 0.5)),
                backlog_share_threshold=float(breakers.get("backlogShareThreshold", 0.5)),
            ),
            body=body,
        )
