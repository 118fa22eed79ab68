"""The only code that talks HTTP to receivers: connects to the checked address, no redirects."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import httpcore
import httpx

from compliance.delivery.policy import ErrorType
from compliance.delivery.ssrf import Target, _bracket
from compliance.delivery.transport import ExchangeBackend, exchange


@dataclass(frozen=True)
class AttemptResult:
    """What one POST produced."""

    status_code: int | None
    error_type: ErrorType | None
    message: str
    duration_seconds: float
    retry_after: str | None = None


class Sender:
    """A pooled HTTP client for deliveries; safe to share between threads."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float, body_cap: int, max_connections: int
    ) -> None:
        self._body_cap = body_cap
        # One exchange (connect, send, response headers, capped body) ends by connect + read
        # timeout in total, however a receiver paces its bytes.
        self._total_seconds = connect_timeout + read_timeout
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=False,
            transport=_ExchangeTransport(httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            )),
            trust_env=False,  # proxies from the environment would bypass the address check
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def post(self, target: Target, address: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        """POST ``body`` to ``target`` over a connection to ``address`` (already checked)."""
        # The URL names the host (pool key, TLS verification, SNI, Host); the socket goes to the
        # checked address (transport.exchange pins it).
        url = f"{target.scheme}://{_bracket(target.host)}:{target.port}{target.path}"
        started = time.monotonic()
        try:
            request = self._client.build_request("POST", url, content=body, headers=headers)
            with exchange(address=address, seconds=self._total_seconds):
                response = self._client.send(request, stream=True)
                try:
                    self._drain(response)
                finally:
                    response.close()
            return AttemptResult(
                status_code=response.status_code,
                error_type=None,
                message=f"HTTP {response.status_code}",
                duration_seconds=time.monotonic() - started,
                retry_after=response.headers.get("retry-after"),
            )
        except httpx.TimeoutException as exc:
            return self._error(ErrorType.TIMEOUT, exc, started)
        except httpx.HTTPError as exc:
            kind = ErrorType.TLS if _is_tls(exc) else ErrorType.CONNECTION
            return self._error(kind, exc, started)
        except OSError as exc:
            return self._error(ErrorType.CONNECTION, exc, started)
        except Exception as exc:  # e.g. a header httpx cannot encode: settle the attempt, never crash
            return self._error(ErrorType.INTERNAL, exc, started)

    def _drain(self, response: httpx.Response) -> None:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read >= self._body_cap:
                break

    @staticmethod
    def _error(kind: ErrorType, exc: BaseException, started: float) -> AttemptResult:
        message = f"{type(exc).__name__}: {exc}"[:500]
        return AttemptResult(None, kind, message, time.monotonic() - started)


class _ExchangeTransport(httpx.HTTPTransport):
    """httpx's own transport over an httpcore pool whose sockets honour the thread's deadline
    (HTTPTransport takes no network backend, so its pool is rebuilt with ours)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=ExchangeBackend(),
        )


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
