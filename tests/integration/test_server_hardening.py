"""The real API server (``compliance api``, a uvicorn subprocess): bounded request heads (431)
and credentials in query strings kept out of the access log."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import wait_until

COMPLIANCE = str(Path(sys.executable).with_name("compliance"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.proc = subprocess.Popen(
            [COMPLIANCE, "api", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self) -> ApiServer:
        def live() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_until(live, timeout=30, message="the API did not start")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def raw(self, head: bytes) -> bytes:
        """Send a raw request head; the answer, or b"" when the server reset the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            with contextlib.suppress(OSError):  # refused mid-send: the answer may still be readable
                sock.sendall(head)
            chunks = []
            try:
                while data := sock.recv(65536):
                    chunks.append(data)
            except ConnectionResetError:
                pass
        return b"".join(chunks)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[ApiServer]:
    api = ApiServer(env, tmp_path / "api.log").wait_ready()
    yield api
    api.stop()


def request(*headers: bytes) -> bytes:
    return (b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"".join(headers)
            + b"\r\n")


def status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_an_ordinary_head_is_served(server):
    answer = server.raw(request(b"X-Pad: " + b"a" * 8000 + b"\r\n", *[b"X-%d: v\r\n" % i for i in range(60)]))
    assert status(answer) == 200, answer[:200]


def test_a_header_past_the_size_limit_is_a_431(server):
    answer = server.raw(request(b"X-Big: " + b"a" * 40_000 + b"\r\n"))
    assert status(answer) == 431, answer[:300]
    assert b'"request_header_fields_too_large"' in answer


def test_too_many_header_fields_is_a_431(server):
    answer = server.raw(request(*[b"X-%d: v\r\n" % i for i in range(101)]))
    assert status(answer) == 431, answer[:300]


@pytest.mark.parametrize("head", [
    request(b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n"),  # one 8 MB header
    request(*[b"X-%05d: " % i + b"b" * 1000 + b"\r\n" for i in range(10_000)]),  # 10 MB, 10,000 fields
], ids=["8MB-header", "10000-headers"])
def test_huge_heads_never_reach_the_app(server, head):
    answer = server.raw(head)
    # The server answers 431 as soon as the limit is passed and closes; with megabytes still
    # unsent the close may reach the client as a reset before the answer. Never a 200.
    assert status(answer) in (431, None), answer[:300]
    assert b"alive" not in answer
    assert httpx.get(f"{server.url}/health/live").status_code == 200  # and the server lives on


def test_credentials_in_query_strings_are_not_logged(server):
    key = "leaked-key-0123456789abcdef"
    refused = httpx.get(f"{server.url}/webhook-statuses", params={"api_key": key, "status": "x-private-9"})
    assert refused.status_code == 401
    token = "tok-9876543210-zyx"
    served = httpx.get(f"{server.url}/health/live", params={"access_token": token, "page": "2"})
    assert served.status_code == 200
    wait_until(lambda: "GET /health/live?" in server.log(), message="no access log line")
    wait_until(lambda: "GET /webhook-statuses?" in server.log(), message="no access log line")
    log = server.log()
    assert key not in log and token not in log
    assert "x-private-9" not in log  # a refused request's whole query is redacted
    assert "access_token=[redacted]&page=2" in log  # others keep what is not a credential
