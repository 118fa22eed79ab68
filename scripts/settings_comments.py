"""The comment above each field of compliance.settings.Settings: the settings' documentation.

Shared by scripts/settings-table.py (the README table) and scripts/sync-chart-config.py (the
chart's config schema), so both describe a setting in the same words.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def field_comments(fields: object) -> dict[str, str]:
    """Field name -> the ``#`` comment lines right above it in settings.py, joined."""
    lines = (ROOT / "service/compliance/settings.py").read_text().splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"    (\w+): ", line)
        if match and match.group(1) in fields:  # type: ignore[operator]
            j, parts = i - 1, []
            while lines[j].strip().startswith("#") and not lines[j].strip().startswith("# ---"):
                parts.insert(0, lines[j].strip()[1:].strip())
                j -= 1
            out[match.group(1)] = " ".join(parts)
    return out
