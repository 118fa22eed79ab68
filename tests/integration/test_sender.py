"""The sender against a real loopback receiver: hostile pacing and unencodable headers end as a
settled attempt, never a stuck thread or an exception."""

from __future__ import annotations

import time

from compliance.delivery.policy import ErrorType
from compliance.delivery.sender import Sender
from compliance.delivery.ssrf import parse_target
from tests.support.receiver import Reply


def _sender(connect: float = 1.0, read: float = 1.0) -> Sender:
    return Sender(connect_timeout=connect, read_timeout=read, body_cap=1024, max_connections=4)


def test_a_receiver_dripping_bytes_inside_the_read_timeout_is_cut_at_the_total_deadline(receiver):
    """Every byte arrives within the 1 s read timeout, the whole answer would take ~10 s: the
    exchange ends as a timeout at connect + read timeout (2 s)."""
    receiver.script("/drip", Reply(200, drip=0.25, body=b"x" * 8))
    sender = _sender()
    target = parse_target(receiver.url("/drip"), https_only=False, allowed_ports=[])
    started = time.monotonic()
    result = sender.post(target, "127.0.0.1", b"{}", {"content-type": "application/json"})
    elapsed = time.monotonic() - started
    sender.close()
    assert result.error_type is ErrorType.TIMEOUT and result.status_code is None, result
    assert 1.5 <= elapsed < 4.0, elapsed


def test_the_deadline_is_per_exchange_not_per_sender(receiver):
    """A normal answer after a dripped one is delivered: the deadline does not leak."""
    receiver.script("/drip", Reply(200, drip=0.25, body=b"x" * 8))
    sender = _sender()
    target = parse_target(receiver.url("/drip"), https_only=False, allowed_ports=[])
    assert sender.post(target, "127.0.0.1", b"{}", {}).error_type is ErrorType.TIMEOUT
    time.sleep(2.5)  # longer than the deadline: a leaked one would fail the next exchange at once
    ok = sender.post(target, "127.0.0.1", b"{}", {})
    sender.close()
    assert (ok.status_code, ok.error_type) == (200, None)


def test_a_header_httpx_cannot_encode_settles_as_internal(receiver):
    sender = _sender()
    target = parse_target(receiver.url("/hook"), https_only=False, allowed_ports=[])
    result = sender.post(target, "127.0.0.1", b"{}", {"x-correlation-id": "caf\xe9-\u2603"})
    sender.close()
    assert result.error_type is ErrorType.INTERNAL and "encode" in result.message.lower(), result
    assert receiver.received("/hook") == []
