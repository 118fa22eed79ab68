"""The prometheus-client multiprocess directory, set up before anything imports the metrics."""

from __future__ import annotations

import os
import sys
import tempfile


def ensure_multiproc_dir() -> str:
    """Point prometheus-client at a multiprocess directory (it reads the variable on import)."""
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("prometheus_client was imported before the multiprocess dir was set")
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="compliance-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path
