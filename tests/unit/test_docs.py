"""The README's configuration table is generated from the settings class and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_is_current():
    table = subprocess.run([sys.executable, str(ROOT / "scripts/settings-table.py")],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert table in (ROOT / "README.md").read_text(), (
        "README configuration table is stale: paste the output of scripts/settings-table.py")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make run" in readme
