"""Outbound URL safety: shape checks, address classification and resolution (SSRF guard)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64_NETWORKS = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Cloud metadata endpoints that are not already link-local.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
_CANONICAL_V4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_NUMERICISH = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


class UnsafeURLError(ValueError):
    """The URL may not be used as a webhook target; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnresolvedHostError(UnsafeURLError):
    """The host did not resolve (now): refused when a URL is accepted, but at delivery time a
    DNS failure may pass, so the delivery engine retries it like a connection error."""


@dataclass(frozen=True)
class Target:
    """A checked destination: where to connect and what to call it."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, starting with "/"

    @property
    def origin(self) -> str:
        """scheme://host:port, the circuit breaker's name for this destination."""
        return f"{self.scheme}://{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_target(url: str, *, https_only: bool, allowed_ports: Iterable[int]) -> Target:
    """Check the URL's shape; raise UnsafeURLError with a reason when it is not acceptable."""
    if len(url) > 2048:
        raise UnsafeURLError("URL longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeURLError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise UnsafeURLError(f"malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURLError("scheme must be http or https")
    if https_only and scheme != "https":
        raise UnsafeURLError("only https targets are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURLError("credentials in the URL are not allowed")
    if not host:
        raise UnsafeURLError("URL has no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    ports = set(allowed_ports)
    if ports and port not in ports:
        raise UnsafeURLError(f"port {port} is not allowed")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UnsafeURLError("bracketed host is not an IPv6 address") from exc
    elif _NUMERICISH.match(host) and not _CANONICAL_V4.match(host) and _is_inet_aton(host):
        raise UnsafeURLError("non-canonical IPv4 spelling (decimal, octal, hex or short form)")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host.lower().rstrip("."), port=port, path=path)


def _is_inet_aton(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in NAT64_NETWORKS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    # IPv4-compatible (deprecated ::a.b.c.d)
    if int(ip) >> 32 == 0 and int(ip) > 1:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def forbidden_reason(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why connecting to ``ip`` is refused, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            reason = forbidden_reason(inner, allow_loopback=allow_loopback)
            if reason:
                return f"embeds {inner}: {reason}"
        if ip.ipv4_mapped is not None or any(ip in n for n in NAT64_NETWORKS):
            return None
    if ip.is_loopback:
        return None if allow_loopback else "loopback address"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_link_local:
        return "link-local address (includes cloud metadata 169.254.169.254)"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "carrier-grade NAT address"
    if ip.is_private:
        return "private address"
    if ip.is_reserved:
        return "reserved address"
    if not ip.is_global:
        return "not a global address"
    return None


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for ``host``, in its order of preference (RFC 6724
    puts families this host cannot reach last), without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_checked(
    target: Target, *, allow_loopback: bool, resolver: Resolver = system_resolver
) -> str:
    """Resolve the host, refuse if ANY address is forbidden, and return the one to connect to."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(target.host, target.port)
        except UnicodeError as exc:  # no IDNA form: no DNS answer will ever change that
            raise UnsafeURLError(f"host name cannot be encoded: {target.host}") from exc
        except OSError as exc:
            raise UnresolvedHostError(f"host does not resolve: {target.host}") from exc
    if not addresses:
        raise UnresolvedHostError(f"host does not resolve: {target.host}")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        reason = forbidden_reason(ip, allow_loopback=allow_loopback)
        if reason:
            raise UnsafeURLError(f"{target.host} resolves to {address}: {reason}")
    return addresses[0]
