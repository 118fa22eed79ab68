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


@dataclass(frozen=True)
class Block:
    """One row of an IANA special-purpose address registry."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    globally_reachable: bool = False


def _blocks(*rows: tuple[str, str] | tuple[str, str, bool]) -> tuple[Block, ...]:
    return tuple(Block(ipaddress.ip_network(row[0]), row[1], *row[2:]) for row in rows)


# The rules are data, not Python's is_global/is_private tables (which change between patch
# releases). IPv4: the IANA IPv4 Special-Purpose Address Registry (2025), plus multicast; an
# address in a block is refused unless IANA marks the block globally reachable (the most specific
# block decides: 192.0.0.9/32 inside 192.0.0.0/24). Every other IPv4 address is public.
IPV4_SPECIAL = _blocks(
    ("0.0.0.0/8", "'this network' address (RFC 791)"),
    ("0.0.0.0/32", "unspecified address"),
    ("10.0.0.0/8", "private address (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "loopback address"),
    ("169.254.0.0/16", "link-local address (includes cloud metadata 169.254.169.254)"),
    ("172.16.0.0/12", "private address (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignment (RFC 6890)"),
    ("192.0.0.0/29", "IPv4 service continuity prefix (RFC 7335)"),
    ("192.0.0.8/32", "IPv4 dummy address (RFC 7600)"),
    ("192.0.0.9/32", "port control protocol anycast (RFC 7723)", True),
    ("192.0.0.10/32", "traversal using relays around NAT anycast (RFC 8155)", True),
    ("192.0.0.170/32", "NAT64/DNS64 discovery address (RFC 7050)"),
    ("192.0.0.171/32", "NAT64/DNS64 discovery address (RFC 7050)"),
    ("192.0.2.0/24", "documentation address (TEST-NET-1, RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)", True),
    ("192.52.193.0/24", "automatic multicast tunneling (RFC 7450)", True),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private address (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)", True),
    ("198.18.0.0/15", "benchmarking address (RFC 2544)"),
    ("198.51.100.0/24", "documentation address (TEST-NET-2, RFC 5737)"),
    ("203.0.113.0/24", "documentation address (TEST-NET-3, RFC 5737)"),
    ("224.0.0.0/4", "multicast address (RFC 5771)"),
    ("240.0.0.0/4", "reserved address (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast address (RFC 919)"),
)
# IPv6: only global unicast (2000::/3) minus the IANA IPv6 Special-Purpose Address Registry's
# blocks that are not globally reachable. Outside 2000::/3 only the IPv4-mapped and NAT64 forms
# pass, and only for a public IPv4 address inside them.
IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
IPV6_SPECIAL = _blocks(
    ("::1/128", "loopback address"),
    ("::/128", "unspecified address"),
    ("::ffff:0:0/96", "IPv4-mapped address (RFC 4291)"),
    ("64:ff9b::/96", "IPv4-IPv6 translation (NAT64, RFC 6052)", True),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only address (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignment (RFC 2928)"),
    ("2001::/32", "Teredo address (RFC 4380)"),
    ("2001:1::1/128", "port control protocol anycast (RFC 7723)", True),
    ("2001:1::2/128", "traversal using relays around NAT anycast (RFC 8155)", True),
    ("2001:1::3/128", "DNS-SD service registration protocol anycast (RFC 9665)", True),
    ("2001:2::/48", "benchmarking address (RFC 5180)"),
    ("2001:3::/32", "automatic multicast tunneling (RFC 7450)", True),
    ("2001:4:112::/48", "AS112-v6 (RFC 7535)", True),
    ("2001:10::/28", "deprecated ORCHID (RFC 4843)"),
    ("2001:20::/28", "ORCHIDv2 (RFC 7343)", True),
    ("2001:30::/28", "drone remote ID protocol entity tags (RFC 9374)", True),
    ("2001:db8::/32", "documentation address (RFC 3849)"),
    ("2002::/16", "6to4 address (RFC 3056)"),
    ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)", True),
    ("3fff::/20", "documentation address (RFC 9637)"),
    ("5f00::/16", "segment routing SID (RFC 9602)"),
    ("fc00::/7", "private address (unique local, RFC 4193)"),
    ("fe80::/10", "link-local address (RFC 4291)"),
    ("fec0::/10", "deprecated site-local address (RFC 3879)"),
    ("ff00::/8", "multicast address (RFC 4291)"),
)


def special_block(ip: IPAddress) -> Block | None:
    """The most specific special-purpose block holding ``ip``, or None."""
    table = IPV4_SPECIAL if ip.version == 4 else IPV6_SPECIAL
    found = [block for block in table if ip in block.network]
    return max(found, key=lambda block: block.network.prefixlen) if found else None


_CANONICAL_V4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_NUMERICISH = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


class UnsafeURLError(ValueError):
    """The URL may not be used as a webhook target; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsignable(UnsafeURLError):
    """Not a URL problem: the webhook's tenant has no signing secret, so it is refused (and
    dead-lettered) like a forbidden URL rather than sent unsigned."""


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
            return None  # a public IPv4 address, reached through mapping or NAT64
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    block = special_block(ip)
    if block is not None and block.name == "loopback address":
        return None if allow_loopback else block.name
    if block is not None and not block.globally_reachable:
        return f"{block.name} in {block.network}"
    if isinstance(ip, ipaddress.IPv6Address) and ip not in IPV6_GLOBAL_UNICAST:
        return f"not a global unicast address (outside {IPV6_GLOBAL_UNICAST})"
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


def is_ip_literal(host: str) -> bool:
    """True for an IP address literal (checking it needs no DNS)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
