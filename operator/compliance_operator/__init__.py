"""The compliance operator: queue- and breaker-aware worker autoscaling, DLQ replay as Jobs.

Layers, lowest first: ``settings`` and ``policy``/``spec``/``jobs`` (pure), ``metrics_source`` (Redis,
read-only) and ``k8s`` (the only module that calls the Kubernetes API), ``handlers`` (one
reconcile function per resource: observe, decide, apply), ``main`` (thin kopf registrations).
"""

GROUP = "reporting.compliance.io"
VERSION = "v1alpha1"
AUTOSCALERS = "workerautoscalers"
REPLAYS = "deadletterreplays"
