#!/usr/bin/env python3
"""Print the README's configuration table from the Settings class (the comments are the docs)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from compliance.settings import Settings  # noqa: E402


def table() -> str:
    """Markdown table: variable, default, meaning."""
    lines = (ROOT / "service/compliance/settings.py").read_text().splitlines()
    comments: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"    (\w+): ", line)
        if match and match.group(1) in Settings.model_fields:
            j, parts = i - 1, []
            while lines[j].strip().startswith("#") and not lines[j].strip().startswith("# ---"):
                parts.insert(0, lines[j].strip()[1:].strip())
                j -= 1
            comments[match.group(1)] = " ".join(parts)
    out = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "(empty)"
        out.append(f"| `COMPLIANCE_{name.upper()}` | `{default}` | {comments.get(name, '')} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
