"""``compliance receiver`` as a real subprocess: answers POST with 200, prints each webhook, and
verifies Standard Webhooks signatures made by the service's own signer."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from compliance.delivery.signing import signed_headers

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


class Receiver:
    """The CLI process, its stdout read line by line on a thread (waits block on the queue)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compliance.cli.main", "receiver", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next_line()
        match = re.match(r"listening on (http://\S+/)", first)
        assert match, first
        self.url = match.group(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 20.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output; stderr: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
                                 ) from None

    def printed_until(self, prefix: str) -> list[str]:
        """Lines printed up to and including the first one starting with ``prefix``."""
        out: list[str] = []
        while not out or not out[-1].lstrip().startswith(prefix):
            out.append(self.next_line())
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def verifying() -> Iterator[Receiver]:
    receiver = Receiver("--secret", SECRET)
    yield receiver
    receiver.stop()


def signed(body: str, webhook_id: str = "wh_1") -> dict[str, str]:
    return signed_headers(secrets=[SECRET], webhook_id=webhook_id, body=body, correlation_id="corr-1")


def test_a_signed_webhook_is_answered_200_printed_and_verified(verifying: Receiver) -> None:
    body = json.dumps({"event": "report.completed", "data": {"report_id": "r-1"}})
    answer = httpx.post(verifying.url + "hooks", content=body, headers=signed(body), timeout=10)
    assert answer.status_code == 200, answer.text
    printed = verifying.printed_until("signature:")
    assert printed[0] == "--- POST /hooks"
    assert "webhook-id: wh_1" in printed and "x-correlation-id: corr-1" in printed
    assert any(line.startswith("webhook-signature: v1,") for line in printed)
    assert '"report_id": "r-1"' in "\n".join(printed)
    assert printed[-1] == "signature: valid"


def test_a_tampered_or_unsigned_webhook_is_refused(verifying: Receiver) -> None:
    body = json.dumps({"event": "report.completed"})
    headers = signed(body)
    answer = httpx.post(verifying.url, content=body.replace("completed", "failed"), headers=headers, timeout=10)
    assert answer.status_code == 401
    assert verifying.printed_until("signature:")[-1].startswith("signature: INVALID")
    answer = httpx.post(verifying.url, content=body, headers={"content-type": "application/json"}, timeout=10)
    assert answer.status_code == 401
    assert verifying.printed_until("signature:")[-1].startswith("signature: INVALID")


def test_without_a_secret_every_post_gets_200() -> None:
    receiver = Receiver()
    try:
        answer = httpx.post(receiver.url, json={"event": "e"}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"received": True}
        printed = receiver.printed_until('"event"')
        assert printed[0] == "--- POST /" and not any(line.startswith("signature") for line in printed)
    finally:
        receiver.stop()
