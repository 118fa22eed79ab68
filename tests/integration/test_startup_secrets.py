"""No secret value appears in any startup error: real ``compliance`` processes with bad settings
(pydantic echoes a failing input in its error unless told not to)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ADMIN_KEY, SECRET

COMPLIANCE = str(Path(sys.executable).with_name("compliance"))

BAD_CONFIGS = {
    # a bad list item next to a valid signing secret
    "secrets": {"COMPLIANCE_WEBHOOK_SECRETS": f"{SECRET},bogus"},
    "secrets-json": {"COMPLIANCE_WEBHOOK_SECRETS": f'["{SECRET}", "whsec_!!"]'},
    # a model-level error (placeholder producer key) while other inputs hold secrets
    "model": {"COMPLIANCE_ADMIN_API_KEYS": ADMIN_KEY, "COMPLIANCE_PRODUCER_API_KEYS": "changeme",
              "COMPLIANCE_WEBHOOK_SECRETS": SECRET,
              "COMPLIANCE_REDIS_URL": "redis://:redis-password-4242@127.0.0.1:1/0"},
    "short-key": {"COMPLIANCE_ADMIN_API_KEYS": "short-admin-x1", "COMPLIANCE_PRODUCER_API_KEYS": ADMIN_KEY},
    "field": {"COMPLIANCE_ADMIN_API_KEYS": ADMIN_KEY, "COMPLIANCE_PRODUCER_API_KEYS": ADMIN_KEY,
              "COMPLIANCE_WEBHOOK_SECRETS": SECRET, "COMPLIANCE_MAX_BODY_BYTES": "tiny"},
}
SECRET_VALUES = [SECRET, SECRET.removeprefix("whsec_"), ADMIN_KEY, ADMIN_KEY[-8:], "short-admin-x1",
                 "redis-password-4242", "changeme"]


@pytest.mark.parametrize("command", [["api"], ["worker", "--kind", "deliveries"], ["dlq", "list"]])
@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_no_secret_appears_in_a_startup_error(tmp_path, command, name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    result = subprocess.run([COMPLIANCE, *command], env={**env, **BAD_CONFIGS[name]},
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "validation error" in output.lower() or "Error" in output, output
    leaked = [value for value in SECRET_VALUES if value in output]
    assert not leaked, output
