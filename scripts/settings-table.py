#!/usr/bin/env python3
"""Print the README's configuration table from the Settings class (the comments are the docs)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "service"))

from settings_comments import field_comments  # noqa: E402  (scripts/, this file's directory)

from compliance.settings import Settings  # noqa: E402


def table() -> str:
    """Markdown table: variable, default, meaning."""
    comments = field_comments(Settings.model_fields)
    out = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "(empty)"
        out.append(f"| `COMPLIANCE_{name.upper()}` | `{default}` | {comments.get(name, '')} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
