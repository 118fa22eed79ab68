"""The sender's socket layer: connections go to the checked address, and an exchange has a
total deadline.

- **Pinned address.** The request URL names the real host, so httpx's pool is keyed by host
  (a connection verified for one name is never reused for another), TLS verifies and sends SNI
  for that name, and Host is right. The socket, though, goes to the address the SSRF guard
  checked, never to a second DNS answer (rebinding).
- **Total deadline.** httpx's connect/read/write timeouts bound each socket operation, not the
  exchange: a receiver that sends (or reads) a byte just inside the timeout, again and again,
  would hold a delivery thread for hours. Every socket operation's timeout is clamped to the
  time left before the deadline, and writes go in small slices so that holds for sends too.

Both are per thread (a delivery runs start to end on one thread, and a pooled connection serves
one request at a time), set with ``exchange(...)`` around the request.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore

_local = threading.local()
# Bytes per socket write: small enough that a trickling reader meets the deadline between slices.
WRITE_SLICE = 16_384


@contextmanager
def exchange(*, address: str, seconds: float) -> Iterator[None]:
    """Inside the block this thread's new connections dial ``address``, and every socket
    operation ends by ``seconds`` from now."""
    _local.address = address
    _local.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.address = None
        _local.at = None


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    at: float | None = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the attempt's total deadline passed")
    return left if timeout is None else min(timeout, left)


class ExchangeStream(httpcore.NetworkStream):
    """A socket stream whose reads and writes stop at the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A plain socket write loops over send() with the timeout per call: slice it, so a
        # receiver reading a trickle cannot stretch one write past the deadline.
        for start in range(0, len(buffer), WRITE_SLICE) or [0]:
            self._inner.write(buffer[start:start + WRITE_SLICE], _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return ExchangeStream(self._inner.start_tls(ssl_context, server_hostname,
                                                    _clamp(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class ExchangeBackend(httpcore.NetworkBackend):
    """httpcore's sync backend: new connections dial the pinned address, and every stream it
    opens is bound to the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        address = getattr(_local, "address", None) or host  # the checked address, when pinned
        return ExchangeStream(self._inner.connect_tcp(address, port, _clamp(timeout, httpcore.ConnectTimeout),
                                                      local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                            ) -> httpcore.NetworkStream:  # pragma: no cover - deliveries use TCP
        return ExchangeStream(self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout),
                                                              socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
