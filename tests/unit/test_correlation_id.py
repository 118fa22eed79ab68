"""X-Correlation-ID from clients: kept when it can go out again as a header, replaced otherwise."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from compliance.api.app import create_app, valid_correlation_id
from compliance.settings import Settings


@pytest.mark.parametrize(("value", "kept"), [
    ("corr-123", True),
    ("a" * 128, True),
    ("a" * 129, False),
    ("", False),
    ("caf\xe9-1", False),     # printable, but not ASCII: httpx could not send it on the webhook
    ("snow\u2603", False),
    ("tab\there", False),
])
def test_valid_correlation_id(value: str, kept: bool) -> None:
    assert valid_correlation_id(value) is kept


def test_a_non_ascii_id_is_replaced_not_echoed() -> None:
    # /health/live touches nothing but the process, so no Redis is needed here
    app = create_app(Settings(dev_mode=True, redis_url="redis://127.0.0.1:1/0"))
    with TestClient(app) as client:
        kept = client.get("/health/live", headers={"X-Correlation-ID": "corr-ok-1"})
        replaced = client.get("/health/live", headers={"X-Correlation-ID": "caf\xe9-1".encode()})  # raw UTF-8 bytes
    assert kept.headers["x-correlation-id"] == "corr-ok-1"
    assert replaced.status_code == 200
    assert replaced.headers["x-correlation-id"].isascii()
    assert len(replaced.headers["x-correlation-id"]) >= 32  # a generated id
