"""Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

# Headers that carry secrets or per-attempt signatures; never stored in dead letters.
SECRET_HEADERS = frozenset({"webhook-signature", "authorization", "x-api-key"})


def signed_headers(
    *,
    secrets: Sequence[str],
    webhook_id: str,
    body: str,
    correlation_id: str | None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers for one attempt: every active secret signs, so receivers can rotate."""
    timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
    headers = {
        "content-type": "application/json",
        "user-agent": "compliance-reporting-webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
    }
    if correlation_id:
        headers["x-correlation-id"] = correlation_id
    if secrets:
        signatures = [
            Webhook(secret).sign(msg_id=webhook_id, timestamp=timestamp, data=body)
            for secret in secrets
        ]
        headers["webhook-signature"] = " ".join(signatures)
    return headers


def without_secrets(headers: dict[str, str]) -> dict[str, str]:
    """The headers as they may be stored: signatures and credentials removed."""
    return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}
