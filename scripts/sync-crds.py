#!/usr/bin/env python3
"""Copy manifests/crds (the single source) into the chart, gated by crds.install and kept on uninstall.

Run after editing a CRD; tests/chart checks that the copies match.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "manifests/crds"
TARGET = ROOT / "charts/compliance-reporting/templates/crds"
HEADER = (
    "{{- if .Values.crds.install }}\n"
    "# Generated from manifests/crds by scripts/sync-crds.py: edit the source, not this copy.\n"
)
FOOTER = "{{- end }}\n"


def render(source: str) -> str:
    """The chart copy of one CRD manifest."""
    if not re.search(r"^metadata:\n", source, re.MULTILINE):
        raise ValueError("CRD without metadata")
    # keep the CRDs when the release is uninstalled: deleting one deletes every custom resource
    annotated = re.sub(r"^metadata:\n", "metadata:\n  annotations:\n    helm.sh/resource-policy: keep\n",
                       source, flags=re.MULTILINE)
    return HEADER + annotated.rstrip("\n") + "\n" + FOOTER


def expected() -> dict[str, str]:
    """File name -> chart copy content."""
    return {p.name: render(p.read_text()) for p in sorted(SOURCE.glob("*.yaml"))}


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    wanted = expected()
    for stale in TARGET.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, content in wanted.items():
        (TARGET / name).write_text(content)
    print(f"synced {len(wanted)} CRDs into {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
