"""The API's HTTP server: uvicorn on httptools with a bounded request head.

uvicorn's httptools protocol takes request heads of any size: one 8 MB header, or 10 MB over
10,000 headers, reached the app. This protocol counts the bytes of a request head as they arrive
and its header fields as they are parsed, and refuses a head larger than
``COMPLIANCE_MAX_HEADER_BYTES`` (request line included) or with more than
``COMPLIANCE_MAX_HEADER_COUNT`` fields, before buffering more: ``431 Request Header Fields Too
Large`` (uvicorn answers every protocol error with 400), and the connection is closed.

(Until this, the API ran uvicorn's h11 protocol for its head limit; httptools' C parser costs a
fraction of h11's pure-Python one per request.)
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from compliance.settings import Settings

PROTOCOL = "compliance.api.server:BoundedHttpToolsProtocol"

_CODES = {431: ("request_header_fields_too_large", "Request Header Fields Too Large")}


@cache
def _max_header_count() -> int:
    return Settings().max_header_count


def _refusal_431(max_bytes: int) -> bytes:
    """The JSON body of a 431."""
    code, _ = _CODES[431]
    return json.dumps({"error": {"code": code, "message": (
        f"request headers too large or too many: at most {max_bytes} bytes and "
        f"{_max_header_count()} fields")}}).encode()


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserError."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head, answering 431 when it is exceeded."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_bytes = int(config.h11_max_incomplete_event_size)
        self._max_headers = _max_header_count()
        self._in_head = True  # between a message's start and the end of its head
        self._head_bytes = 0  # bytes received while in a head (whatever the parser holds)
        self._parsed_bytes = 0  # request line and fields parsed so far
        self._fields = 0
        self._refusal = 400

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still incomplete past the limit: the parser would go on buffering it.
        if (self._in_head and self._head_bytes > self._max_bytes + 4
                and not self.transport.is_closing()):
            self._refusal = 431
            self.send_400_response("request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._parsed_bytes = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url) + 16, fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _count(self, size: int, *, fields: int) -> None:
        self._parsed_bytes += size
        self._fields += fields
        if self._parsed_bytes > self._max_bytes or self._fields > self._max_headers:
            self._refusal = 431
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._refusal != 431:
            super().send_400_response(msg)
            return
        _, reason = _CODES[431]
        body = _refusal_431(self._max_bytes)
        self.transport.write(
            b"HTTP/1.1 431 " + reason.encode() + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)
        self.transport.close()
