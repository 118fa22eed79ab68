"""The delivery engine's HTTP client (``AsyncSender``, aiohttp) against a real loopback receiver:
one deadline per exchange, bodies read up to the cap, kept-alive connections, and every failure
a settled result, never an exception."""

from __future__ import annotations

import asyncio
import time

from compliance.delivery.async_sender import AsyncSender
from compliance.delivery.policy import ErrorType
from compliance.delivery.sender import AttemptResult
from compliance.delivery.ssrf import parse_target, system_resolver
from tests.support.receiver import Reply


def _post_all(receiver, paths: list[str], *, connect: float = 1.0, read: float = 1.0,
              body_cap: int = 1024,
              headers: dict[str, str] | None = None) -> list[tuple[AttemptResult, float]]:
    """POST to each path in turn with one sender; each result with its duration."""

    async def run() -> list[tuple[AttemptResult, float]]:
        sender = AsyncSender(connect_timeout=connect, read_timeout=read, body_cap=body_cap,
                             max_connections=4, allow_loopback=True, resolver=system_resolver)
        out = []
        try:
            for path in paths:
                target = parse_target(receiver.url(path), https_only=False, allowed_ports=[])
                started = time.monotonic()
                result = await sender.post(target, b"{}", headers or {})
                out.append((result, time.monotonic() - started))
        finally:
            await sender.close()
        return out

    return asyncio.run(run())


def test_a_receiver_dripping_bytes_is_cut_at_connect_plus_read_timeout(receiver):
    """Every byte arrives well inside the read timeout, the whole answer would take ~10 s: the
    exchange ends as a timeout at connect + read timeout (2 s), and the next one on the same
    sender is answered normally (the deadline is the exchange's, not the sender's)."""
    receiver.script("/drip", Reply(200, drip=0.25, body=b"x" * 8))
    (dripped, took), (normal, _) = _post_all(receiver, ["/drip", "/hook"])
    assert dripped.error_type is ErrorType.TIMEOUT and dripped.status_code is None, dripped
    assert 1.5 <= took < 4.0, took
    assert (normal.status_code, normal.error_type) == (200, None), normal


def test_a_hung_receiver_is_a_timeout_and_a_reset_is_a_connection_error(receiver):
    receiver.script("/hang", Reply(hang=4))
    receiver.script("/reset", Reply(reset=True))
    (hung, took), (reset, _) = _post_all(receiver, ["/hang", "/reset"])
    assert hung.error_type is ErrorType.TIMEOUT and took < 3.5, (hung, took)
    assert reset.error_type is ErrorType.CONNECTION and reset.status_code is None, reset


def test_bodies_are_read_up_to_the_cap_and_those_under_it_keep_the_connection(receiver):
    """An answer under the cap is read whole (many packets), so its connection is reused; an
    answer past the cap still settles with its status (the rest is not read)."""
    receiver.script("/medium", *[Reply(200, body=b"m" * 300_000)] * 2)
    receiver.script("/big", Reply(200, body=b"y" * 2_000_000))
    results = _post_all(receiver, ["/medium", "/medium", "/big"], body_cap=400_000)
    assert [(r.status_code, r.error_type) for r, _ in results] == [(200, None)] * 3, results
    first, second = receiver.received("/medium")
    assert first.client_port == second.client_port  # kept alive: the body was read to its end


def test_status_codes_and_retry_after_come_back_as_they_were_sent(receiver):
    receiver.script("/throttled", Reply(429, headers={"Retry-After": "7"}))
    receiver.script("/gone", Reply(410, body=b""))
    (throttled, _), (gone, _) = _post_all(receiver, ["/throttled", "/gone"])
    assert (throttled.status_code, throttled.retry_after) == (429, "7"), throttled
    assert (gone.status_code, gone.error_type) == (410, None), gone


def test_a_header_aiohttp_cannot_send_settles_without_reaching_the_receiver(receiver):
    (result, _), = _post_all(receiver, ["/hook"], headers={"x-correlation-id": "a\r\nx-injected: 1"})
    assert result.status_code is None and result.error_type is not None, result
    assert receiver.received("/hook") == []
