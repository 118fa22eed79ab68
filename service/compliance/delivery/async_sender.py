"""The asyncio engine's HTTP client (aiohttp): the same rules as ``sender.Sender``.

- The URL names the host, so the pool is keyed per host and TLS verifies and sends SNI for it.
- Every new connection resolves through ``CheckedResolver``, which refuses a host if any of its
  addresses is forbidden and hands aiohttp only the checked one (DNS rebinding cannot slip in).
- No redirects, no proxies from the environment, the body read up to a cap, and one exchange
  ends by connect + read timeout in total.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from compliance.delivery import ssrf
from compliance.delivery.policy import ErrorType
from compliance.delivery.sender import AttemptResult
from compliance.delivery.ssrf import Target, _bracket


class CheckedResolver(AbstractResolver):
    """Resolves through the outbound guard; a forbidden address fails the connection."""

    def __init__(self, *, allow_loopback: bool, resolver: ssrf.Resolver,
                 allowed_networks: tuple[ssrf.Network, ...] = ()) -> None:
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        self._allowed = allowed_networks

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The one checked address of ``host``."""
        target = Target(scheme="https", host=host, port=port, path="/")
        if ssrf.is_ip_literal(host):
            address = ssrf.resolve_checked(target, allow_loopback=self._allow_loopback,
                                           resolver=self._resolver, allowed_networks=self._allowed)
        else:
            address = await asyncio.to_thread(ssrf.resolve_checked, target,
                                              allow_loopback=self._allow_loopback,
                                              resolver=self._resolver, allowed_networks=self._allowed)
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        """Nothing to release."""


class AsyncSender:
    """A pooled aiohttp session for deliveries; use from one event loop."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, body_cap: int,
                 max_connections: int, allow_loopback: bool, resolver: ssrf.Resolver,
                 allowed_networks: tuple[ssrf.Network, ...] = ()) -> None:
        self._body_cap = body_cap
        # One deadline for the exchange (no per-read timer: aiohttp re-arms that one on every
        # chunk it receives, and the total already ends a receiver that trickles).
        self._timeout = aiohttp.ClientTimeout(total=connect_timeout + read_timeout,
                                              connect=connect_timeout)
        self._connector_args: dict[str, Any] = {
            "limit": max_connections, "limit_per_host": 0, "use_dns_cache": False,
            "resolver": CheckedResolver(allow_loopback=allow_loopback, resolver=resolver,
                                        allowed_networks=allowed_networks),
        }
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**self._connector_args), timeout=self._timeout,
                trust_env=False, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()

    async def post(self, target: Target, body: bytes, headers: dict[str, str]) -> AttemptResult:
        """POST ``body`` to ``target``; any failure is a result, never an exception."""
        url = f"{target.scheme}://{_bracket(target.host)}:{target.port}{target.path}"
        started = time.monotonic()
        try:
            async with self._client().post(url, data=body, headers=headers,
                                           allow_redirects=False) as response:
                read = 0
                while read < self._body_cap and not response.content.at_eof():
                    chunk = await response.content.read(self._body_cap - read)
                    if not chunk:
                        break
                    read += len(chunk)
                return AttemptResult(
                    status_code=response.status, error_type=None,
                    message=f"HTTP {response.status}",
                    duration_seconds=time.monotonic() - started,
                    retry_after=response.headers.get("retry-after"))
        except TimeoutError as exc:
            return _error(ErrorType.TIMEOUT, exc, started)
        except aiohttp.ClientSSLError as exc:
            return _error(ErrorType.TLS, exc, started)
        except (aiohttp.ClientError, OSError) as exc:
            return _error(ErrorType.CONNECTION, exc, started)
        except Exception as exc:  # e.g. a header aiohttp cannot encode: settle, never crash
            return _error(ErrorType.INTERNAL, exc, started)


def _error(kind: ErrorType, exc: BaseException, started: float) -> AttemptResult:
    message = f"{type(exc).__name__}: {exc}"[:500]
    return AttemptResult(None, kind, message, time.monotonic() - started)
