"""The SSRF guard against the IANA special-purpose address registries, row by row.

The rows below are copied from the registries (IPv4 and IPv6 Special-Purpose Address
Registries, as published in 2025, plus the multicast blocks and the deprecated site-local
fec0::/10), not read from the module under test: a row the guard forgets fails here. For each
row the first and the last address are checked: refused unless IANA marks the block globally
reachable. Python's is_global tables are not consulted (they change between patch releases).
"""

from __future__ import annotations

import ipaddress

import pytest

from compliance.delivery import ssrf

# (block, globally reachable per IANA; None: "N/A" in the registry, refused)
IPV4_REGISTRY = [
    ("0.0.0.0/8", False), ("0.0.0.0/32", False), ("10.0.0.0/8", False),
    ("100.64.0.0/10", False), ("127.0.0.0/8", False), ("169.254.0.0/16", False),
    ("172.16.0.0/12", False), ("192.0.0.0/24", False), ("192.0.0.0/29", False),
    ("192.0.0.8/32", False), ("192.0.0.9/32", True), ("192.0.0.10/32", True),
    ("192.0.0.170/32", False), ("192.0.0.171/32", False), ("192.0.2.0/24", False),
    ("192.31.196.0/24", True), ("192.52.193.0/24", True), ("192.88.99.0/24", None),
    ("192.168.0.0/16", False), ("192.175.48.0/24", True), ("198.18.0.0/15", False),
    ("198.51.100.0/24", False), ("203.0.113.0/24", False), ("224.0.0.0/4", False),
    ("240.0.0.0/4", False), ("255.255.255.255/32", False),
]
IPV6_REGISTRY = [
    ("::1/128", False), ("::/128", False), ("64:ff9b:1::/48", False), ("100::/64", False),
    ("100:0:0:1::/64", False), ("2001::/23", False), ("2001::/32", None),
    ("2001:1::1/128", True), ("2001:1::2/128", True), ("2001:1::3/128", True),
    ("2001:2::/48", False), ("2001:3::/32", True), ("2001:4:112::/48", True),
    ("2001:10::/28", False), ("2001:20::/28", True), ("2001:30::/28", True),
    ("2001:db8::/32", False), ("2002::/16", None), ("2620:4f:8000::/48", True),
    ("3fff::/20", False), ("5f00::/16", False), ("fc00::/7", False), ("fe80::/10", False),
    ("fec0::/10", False), ("ff00::/8", False),
]


def addresses(block: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    network = ipaddress.ip_network(block)
    return [network.network_address, network.broadcast_address]


def most_specific(ip, registry):
    found = [(b, g) for b, g in registry if ip in ipaddress.ip_network(b)]
    return max(found, key=lambda row: ipaddress.ip_network(row[0]).prefixlen)


CASES = [(block, str(ip), reachable, registry)
         for registry in (IPV4_REGISTRY, IPV6_REGISTRY)
         for block, reachable in registry for ip in addresses(block)]


@pytest.mark.parametrize(("block", "address", "reachable", "registry"), CASES,
                         ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_every_registry_block(block, address, reachable, registry):
    ip = ipaddress.ip_address(address)
    # an edge address may sit in a more specific row (0.0.0.0 in 0.0.0.0/32): that row decides
    _, decisive = most_specific(ip, registry)
    reason = ssrf.forbidden_reason(ip, allow_loopback=False)
    if decisive is True:
        assert reason is None, (address, reason)
    else:
        assert reason is not None, address


@pytest.mark.parametrize("address", [
    "fec0::1",  # site-local, deprecated: accepted by Python's tables
    "3fff::1",  # documentation, RFC 9637
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "5f00::1", "100:0:0:1::1", "2001:db8::1", "2002:808:808::1",  # 6to4 of a public address
    "4000::1", "::8.8.8.8", "1::1",  # outside 2000::/3
])
def test_addresses_pythons_tables_let_through_are_refused(address):
    assert ssrf.forbidden_reason(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "192.88.98.255", "192.88.100.0", "100.63.255.255",
    "100.128.0.0", "172.15.255.255", "172.32.0.0", "198.17.255.255", "198.20.0.0",
    "223.255.255.255", "2606:4700::1111", "2a00:1450:4001::1", "2001:4860:4860::8888",
    "2001:200::1", "3fff:1000::1",  # just past 3fff::/20
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 stays allowed
    "::ffff:8.8.8.8",
])
def test_public_addresses_pass(address):
    assert ssrf.forbidden_reason(ipaddress.ip_address(address), allow_loopback=False) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("64:ff9b::a00:1", "embeds 10.0.0.1"), ("64:ff9b::c058:6301", "embeds 192.88.99.1"),
    ("::ffff:192.0.2.1", "embeds 192.0.2.1"), ("64:ff9b::7f00:1", "embeds 127.0.0.1"),
])
def test_nat64_and_mapped_forms_of_special_ipv4_are_refused(address, reason):
    assert reason in ssrf.forbidden_reason(ipaddress.ip_address(address), allow_loopback=False)


def test_the_module_table_holds_every_registry_row():
    ours = {(str(b.network), b.globally_reachable) for b in (*ssrf.IPV4_SPECIAL, *ssrf.IPV6_SPECIAL)}
    for block, reachable in IPV4_REGISTRY + IPV6_REGISTRY:
        assert (str(ipaddress.ip_network(block)), bool(reachable)) in ours, block
