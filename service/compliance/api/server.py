"""The API's HTTP server: uvicorn on h11 with a bounded request head.

uvicorn's default parser (httptools) takes request heads of any size: one 8 MB header, or 10 MB
over 10,000 headers, reached the app. h11 refuses a head larger than its incomplete-event limit
(``COMPLIANCE_MAX_HEADER_BYTES``, request line included) before buffering more, and this
protocol also refuses more than ``COMPLIANCE_MAX_HEADER_COUNT`` header fields. Both are answered
``431 Request Header Fields Too Large`` (uvicorn answers every protocol error with 400) and the
connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from compliance.settings import Settings

PROTOCOL = "compliance.api.server:BoundedH11Protocol"

_CODES = {431: ("request_header_fields_too_large", "Request Header Fields Too Large")}


@cache
def _max_header_count() -> int:
    return Settings().max_header_count


class _BoundedConnection(h11.Connection):
    """h11's server connection that also counts header fields, and remembers why it refused."""

    def __init__(self, *, max_bytes: int, max_headers: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_bytes)
        self.max_bytes = max_bytes
        self.max_headers = max_headers
        self.refusal = 400

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc.error_status_hint
            raise
        if isinstance(event, h11.Request):
            # h11 bounds only a head still incomplete; one that arrived whole in a single read
            # is measured here.
            size = len(event.method) + len(event.target) + sum(
                len(name) + len(value) + 4 for name, value in event.headers.raw_items())
            if len(event.headers) > self.max_headers or size > self.max_bytes:
                self.refusal = 431
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bounded head, answering 431 when it is exceeded."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _BoundedConnection(max_bytes=config.h11_max_incomplete_event_size,
                                       max_headers=_max_header_count())

    def send_400_response(self, msg: str) -> None:
        status = getattr(self.conn, "refusal", 400)
        if status != 431:
            super().send_400_response(msg)
            return
        code, reason = _CODES[431]
        body = json.dumps({"error": {"code": code, "message": (
            "request headers too large or too many: at most "
            f"{self.config.h11_max_incomplete_event_size} bytes and "
            f"{_max_header_count()} fields")}}).encode()
        event = h11.Response(status_code=431, reason=reason.encode(), headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")])
        self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()
