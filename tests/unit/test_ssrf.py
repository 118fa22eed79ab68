"""SSRF guard: URL shapes and address classes, with a fake resolver (pure unit tests)."""

from __future__ import annotations

import socket

import pytest

from compliance.delivery import ssrf


def resolver_for(mapping):
    def resolve(host, port):
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]
    return resolve


PUBLIC = resolver_for({"example.com": ["93.184.215.14"], "hooks.example.net": ["2606:4700::1111"]})


def check(url, *, allow_loopback=False, https_only=False, ports=(), resolver=PUBLIC):
    target = ssrf.parse_target(url, https_only=https_only, allowed_ports=ports)
    return ssrf.resolve_checked(target, allow_loopback=allow_loopback, resolver=resolver)


REFUSED = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://100.64.0.1/", "carrier-grade"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),  # 240/4 is in the special-purpose registry
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "embeds 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "embeds 169.254.169.254"),
    ("http://[2002:7f00:1::]/", "embeds 127.0.0.1"),  # 6to4
    ("http://[64:ff9b::a00:1]/", "embeds 10.0.0.1"),  # NAT64
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "embeds"),  # Teredo (client 127.0.0.1)
    ("http://2130706433/", "non-canonical"),  # decimal 127.0.0.1
    ("http://0177.0.0.1/", "non-canonical"),  # octal
    ("http://0x7f.0.0.1/", "non-canonical"),  # hex
    ("http://127.1/", "non-canonical"),  # short form
    ("http://[127.0.0.1]/", "bracket"),
    ("ftp://example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"),
    ("http:///path-only", "no host"),
    ("http://exa mple.com/", "whitespace"),
    ("http://example.com\r\n/", "whitespace"),
    ("http://nowhere.invalid/", "does not resolve"),
    ("http://[not-an-ip/", "malformed"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused(url, reason):
    resolver = resolver_for({"example.com": ["93.184.215.14"], "localhost": ["127.0.0.1", "::1"]})
    with pytest.raises(ssrf.UnsafeURLError) as err:
        check(url, resolver=resolver)
    assert reason in err.value.reason


def test_any_forbidden_address_refuses_the_host():
    # DNS answers with one public and one private address: refused (rebinding-style trick).
    mixed = resolver_for({"mixed.example.com": ["93.184.215.14", "10.1.2.3"]})
    with pytest.raises(ssrf.UnsafeURLError, match="private"):
        check("https://mixed.example.com/", resolver=mixed)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://example.com/hook", "93.184.215.14"),
        ("http://example.com:8080/hook?x=1", "93.184.215.14"),
        ("https://hooks.example.net/", "2606:4700::1111"),
        ("https://93.184.215.14/", "93.184.215.14"),
        ("https://[2606:4700::1111]/", "2606:4700::1111"),
    ],
)
def test_public_targets_pass(url, address):
    assert check(url) == address


def test_loopback_only_by_explicit_setting():
    loop = resolver_for({"localhost": ["127.0.0.1"]})
    with pytest.raises(ssrf.UnsafeURLError):
        check("http://127.0.0.1:9000/", resolver=loop)
    assert check("http://127.0.0.1:9000/", allow_loopback=True, resolver=loop) == "127.0.0.1"
    # allowing loopback does not open private ranges
    with pytest.raises(ssrf.UnsafeURLError, match="private"):
        check("http://10.0.0.1/", allow_loopback=True)


def test_allowed_target_networks_open_only_what_they_list():
    """In-cluster receivers: the operator opens the cluster's ranges, nothing else."""
    from compliance.settings import Settings

    s = Settings(dev_mode=True, allowed_target_networks="10.244.0.0/16, 10.96.0.0/12")
    assert s.allowed_target_networks == ["10.244.0.0/16", "10.96.0.0/12"]
    nets = ssrf.networks(tuple(s.allowed_target_networks))
    cluster = resolver_for({"receiver.ns.svc.cluster.local": ["10.96.3.4"], "mixed": ["10.244.0.9", "10.1.0.1"],
                            "meta": ["169.254.169.254"]})
    target = ssrf.parse_target("http://receiver.ns.svc.cluster.local:8080/hook", https_only=False, allowed_ports=())
    with pytest.raises(ssrf.UnsafeURLError, match="private"):
        ssrf.resolve_checked(target, allow_loopback=False, resolver=cluster)
    assert ssrf.resolve_checked(target, allow_loopback=False, resolver=cluster, allowed_networks=nets) == "10.96.3.4"
    for host, reason in (("mixed", "10.1.0.1"), ("meta", "link")):
        with pytest.raises(ssrf.UnsafeURLError, match=reason):
            ssrf.resolve_checked(ssrf.parse_target(f"http://{host}/", https_only=False, allowed_ports=()),
                                 allow_loopback=False, resolver=cluster, allowed_networks=nets)
    with pytest.raises(ssrf.UnsafeURLError, match="loopback"):
        check("http://127.0.0.1/", resolver=resolver_for({}))
    with pytest.raises(ValueError, match="allowed_target_networks"):
        Settings(dev_mode=True, allowed_target_networks="10.0.0.0/33")


def test_https_only_and_port_list():
    with pytest.raises(ssrf.UnsafeURLError, match="https"):
        check("http://example.com/", https_only=True)
    assert check("https://example.com/", https_only=True)
    with pytest.raises(ssrf.UnsafeURLError, match="port 22"):
        check("http://example.com:22/", ports=(80, 443))
    assert check("http://example.com:443/", ports=(80, 443))


def test_target_origin_names_the_breaker():
    target = ssrf.parse_target("HTTPS://Example.COM/a?b=c", https_only=False, allowed_ports=())
    assert target.origin == "https://example.com:443"
    assert target.path == "/a?b=c"
    v6 = ssrf.parse_target("http://[2606:4700::1111]:8080/", https_only=False, allowed_ports=())
    assert v6.origin == "http://[2606:4700::1111]:8080"


def test_default_settings_refuse_loopback(redis_url):
    """Proof on the shipped defaults, through the real system resolver."""
    from compliance.settings import Settings

    s = Settings(dev_mode=True)
    assert s.allow_loopback_targets is False
    target = ssrf.parse_target("http://localhost:80/", https_only=s.https_only,
                               allowed_ports=s.allowed_ports)
    with pytest.raises(ssrf.UnsafeURLError, match="loopback"):
        ssrf.resolve_checked(target, allow_loopback=s.allow_loopback_targets)


def test_system_resolver_keeps_the_resolvers_order(monkeypatch):
    """RFC 6724 ordering from getaddrinfo (IPv4 first on an IPv4-only host) must survive: sorting
    the strings would put "2606:..." before "93...." and connect over IPv6 that may not route."""
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
             (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1::248", 443, 0, 0)),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: infos)
    assert ssrf.system_resolver("example.com", 443) == ["93.184.216.34", "2606:2800:220:1::248"]
