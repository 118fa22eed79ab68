"""Standard Webhooks signatures verify with the reference verifier, including rotation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from compliance.delivery import signing
from tests.support.services import SECRET, SECRET_2

OTHER = "whsec_b3RoZXItc2VjcmV0LW5vdC1pbi11c2UtMTIzNA=="


def test_signature_verifies_and_rotation_signs_with_every_secret():
    body = '{"type":"report.completed","data":{"a":1}}'
    headers = signing.signed_headers(secrets=[SECRET, SECRET_2], webhook_id="wh_1", body=body,
                                     correlation_id="cid-1")
    assert headers["webhook-id"] == "wh_1"
    assert headers["x-correlation-id"] == "cid-1"
    assert len(headers["webhook-signature"].split(" ")) == 2
    # a receiver that knows only the old secret, or only the new one, verifies
    Webhook(SECRET).verify(body, headers)
    Webhook(SECRET_2).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + " ", headers)


def test_signature_is_hmac_of_id_timestamp_body():
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    headers = signing.signed_headers(secrets=[SECRET], webhook_id="wh_x", body="{}",
                                     correlation_id=None, now=now)
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    expected = Webhook(SECRET).sign("wh_x", now, "{}")
    assert headers["webhook-signature"] == expected
    assert "x-correlation-id" not in headers


def test_stored_headers_carry_no_secrets():
    headers = signing.signed_headers(secrets=[SECRET], webhook_id="wh", body="{}",
                                     correlation_id="c")
    stored = signing.without_secrets({**headers, "Authorization": "Bearer x"})
    assert "webhook-signature" not in stored and "Authorization" not in stored
    assert stored["webhook-id"] == "wh"
