"""A real HTTP receiver on loopback whose answers a test scripts."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    reset: bool = False  # close the connection without answering
    hang: float = 0.0  # sleep this long before doing anything (a hung receiver)
    drip: float = 0.0  # send the whole response one byte at a time, this many seconds apart


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int = 0  # the sender's end of the connection: same port, same (kept-alive) connection

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1:<free port>; ``script`` queues replies per path."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        # Every request from the moment its body was read, and those not yet answered (held by
        # a delay or hang, or being dripped): what a test waits on to know work is in flight.
        self._arrived: list[Received] = []
        self._held: dict[int, Received] = {}
        self.peak_in_flight = 0  # the most requests held unanswered at once
        self._scripts: dict[str, deque[Reply]] = {}
        self.default = Reply()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                token = receiver._arrive(self.path, dict(self.headers), body, self.client_address[1])
                try:
                    self._answer(body)
                finally:
                    receiver._settle(token)

            def _answer(self, body: bytes) -> None:
                reply = receiver._next(self.path)
                if reply.hang:
                    time.sleep(reply.hang)
                if reply.reset:
                    receiver._record(self.path, dict(self.headers), body, self.client_address[1])
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                receiver._record(self.path, dict(self.headers), body, self.client_address[1])
                if reply.drip:
                    self._drip(reply)
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                # 1xx/204/304 carry no body: writing one would corrupt the kept-alive connection
                body = b"" if reply.status in (204, 304) or reply.status < 200 else reply.body
                if body or reply.status not in (204, 304):
                    self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, reply: Reply) -> None:
                """Each byte inside any read timeout; the whole response takes ages."""
                head = f"HTTP/1.1 {reply.status} OK\r\ncontent-length: {len(reply.body)}\r\n\r\n"
                try:
                    for byte in head.encode() + reply.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.drip)
                except OSError:
                    pass  # the client gave up: what the test wants
                self.close_connection = True

            do_PUT = do_POST
            do_GET = do_POST

        class QuietServer(ThreadingHTTPServer):
            # socketserver's listen backlog is 5: a sender opening 16 connections at once had
            # the rest of its SYNs dropped, and with the tests' 1 s connect timeout they failed
            # and opened the breaker. A real receiver listens with a backlog of hundreds.
            request_queue_size = 512

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that hang up (timeouts, killed workers) are part of the tests

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies`` in order, then the default."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def _next(self, path: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(path.split("?", 1)[0])
            return queue.popleft() if queue else self.default

    def _arrive(self, path: str, headers: dict[str, str], body: bytes, client_port: int) -> int:
        request = Received(path, {k.lower(): v for k, v in headers.items()}, body, time.time(),
                           client_port)
        with self._lock:
            self._arrived.append(request)
            self._held[id(request)] = request
            self.peak_in_flight = max(self.peak_in_flight, len(self._held))
        return id(request)

    def _settle(self, token: int) -> None:
        with self._lock:
            self._held.pop(token, None)

    def _record(self, path: str, headers: dict[str, str], body: bytes, client_port: int = 0) -> None:
        with self._lock:
            self.requests.append(Received(path, {k.lower(): v for k, v in headers.items()},
                                          body, time.time(), client_port))

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def arrived(self, path: str | None = None) -> list[Received]:
        """Every request whose body was read, answered or not, in arrival order."""
        with self._lock:
            return [r for r in self._arrived if path is None or r.path == path]

    def in_flight(self, path: str | None = None) -> list[Received]:
        """Requests that arrived and are not answered yet (the sender is waiting on them)."""
        with self._lock:
            return [r for r in self._held.values() if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests on {path}, got {len(self.received(path))}")
