"""The engine's memory of hosts that passed the outbound guard."""

from __future__ import annotations

from compliance.delivery.pump import CheckedHosts


def test_a_host_that_passed_is_fresh_for_its_seconds_only():
    hosts = CheckedHosts(seconds=10)
    assert not hosts.fresh("hooks.example.com", 443, now=100.0)
    hosts.passed("hooks.example.com", 443, now=100.0)
    assert hosts.fresh("hooks.example.com", 443, now=109.9)
    assert not hosts.fresh("hooks.example.com", 443, now=110.0)
    assert not hosts.fresh("hooks.example.com", 8443, now=101.0)  # another port: another check


def test_past_its_size_it_forgets_rather_than_grows():
    hosts = CheckedHosts(seconds=10, size=3)
    for n in range(3):
        hosts.passed(f"h{n}.example.com", 443, now=0.0)
    hosts.passed("h3.example.com", 443, now=0.0)
    assert hosts.fresh("h3.example.com", 443, now=1.0)
    assert not hosts.fresh("h0.example.com", 443, now=1.0)
