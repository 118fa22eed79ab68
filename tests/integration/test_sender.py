"""The sender against a real loopback receiver: hostile pacing and unencodable headers end as a
settled attempt, never a stuck thread or an exception."""

from __future__ import annotations

import socket
import threading
import time

import httpcore
import pytest

from compliance.delivery.policy import ErrorType
from compliance.delivery.sender import Sender
from compliance.delivery.ssrf import Target, parse_target
from compliance.delivery.transport import ExchangeBackend, exchange
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
    sender = _sender()  # connect 1 s + read 1 s: each exchange ends within 2 s of its start
    target = parse_target(receiver.url("/drip"), https_only=False, allowed_ports=[])
    first_started = time.monotonic()
    assert sender.post(target, "127.0.0.1", b"{}", {}).error_type is ErrorType.TIMEOUT
    # The dripped exchange is cut at its own deadline, so that deadline is already behind us: one
    # leaking out of it would fail the next exchange at once. Nothing to wait for; the
    # precondition is asserted instead of slept past.
    assert time.monotonic() - first_started >= 2.0
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


def test_connections_go_to_the_checked_address_and_are_pooled_per_host(receiver):
    """Names that do not resolve at all reach the receiver: the socket dials the checked address,
    not a fresh DNS answer. Each name gets its own connection (a connection made for one name is
    never reused for another), and one name's requests reuse theirs."""
    sender = _sender()
    for host in ("a.invalid", "b.invalid", "a.invalid"):
        target = Target(scheme="http", host=host, port=receiver.port, path="/pinned")
        result = sender.post(target, "127.0.0.1", b"{}", {})
        assert (result.status_code, result.error_type) == (200, None), result
    sender.close()
    first_a, b, second_a = receiver.received("/pinned")
    assert [r.headers["host"] for r in (first_a, b, second_a)] == [
        f"a.invalid:{receiver.port}", f"b.invalid:{receiver.port}", f"a.invalid:{receiver.port}"]
    assert first_a.client_port == second_a.client_port != b.client_port


def test_a_receiver_reading_a_trickle_cannot_stretch_one_write_past_the_deadline():
    """The receiver reads 2 KB every 50 ms from a connection with small buffers (as on a slow
    network): every send() makes progress within the write timeout, so one big write would run
    for minutes; written in slices against the deadline, it ends at the deadline."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            while not stop.is_set():
                try:
                    if not conn.recv(2048):
                        return
                except OSError:
                    return
                time.sleep(0.05)

    threading.Thread(target=trickle, daemon=True).start()
    small_send_buffer = [(socket.SOL_SOCKET, socket.SO_SNDBUF, 16_384)]
    started = time.monotonic()
    try:
        with exchange(address="127.0.0.1", seconds=1.5):
            stream = ExchangeBackend().connect_tcp("trickle.invalid", server.getsockname()[1], timeout=1.0,
                                                   socket_options=small_send_buffer)
            with pytest.raises(httpcore.WriteTimeout):
                stream.write(b"x" * (2 * 1024 * 1024), timeout=1.0)
            stream.close()
    finally:
        stop.set()
        server.close()
    assert time.monotonic() - started < 4.0
