"""DNS at delivery time (real Redis stores, the real engine; only the resolver is scripted):
a resolver failure may pass, so it is retried like a refused connection; an address the guard
forbids is still dead-lettered at once as `validation`."""

from __future__ import annotations

import socket

import pytest

from compliance.delivery.models import Envelope
from compliance.delivery.sender import Sender
from compliance.delivery.service import Deliverer
from compliance.worker.runtime import Runtime


def _deliverer(settings, resolver) -> tuple[Deliverer, Runtime]:
    rt = Runtime(settings)
    sender = Sender(connect_timeout=1, read_timeout=1, body_cap=1024, max_connections=2)
    return Deliverer(settings=settings, statuses=rt.statuses, dead_letters=rt.dead_letters,
                     breakers=rt.breakers, sender=sender, resolver=resolver), rt


def _envelope() -> Envelope:
    return Envelope(webhook_id="wh_dns_1", url="https://hooks.example.com/x", event="e", payload={})


@pytest.mark.parametrize("error", [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
                                   socket.gaierror(socket.EAI_NONAME, "Name or service not known")])
def test_a_resolver_failure_is_retried_not_dead_lettered(settings, r, error) -> None:
    def failing(host: str, port: int) -> list[str]:
        raise error

    deliverer, rt = _deliverer(settings, failing)
    followup = deliverer.attempt(_envelope())
    assert followup is not None and followup.envelope.attempts == 1  # a retry is scheduled
    status = rt.statuses.get("wh_dns_1")
    assert status is not None and status.status == "retrying"
    assert status.last_error_type == "connection"
    assert rt.dead_letters.get("wh_dns_1") is None


def test_a_forbidden_address_is_still_dead_lettered_at_once(settings, r) -> None:
    deliverer, rt = _deliverer(settings, lambda host, port: ["10.0.0.7"])
    assert deliverer.attempt(_envelope()) is None
    entry = rt.dead_letters.get("wh_dns_1")
    assert entry is not None and entry.error_type == "validation"


def test_while_the_breaker_is_open_nothing_is_resolved_and_the_webhook_waits(settings, r) -> None:
    def must_not_resolve(host: str, port: int) -> list[str]:
        raise AssertionError("resolved while the breaker was open")

    deliverer, rt = _deliverer(settings, must_not_resolve)
    for _ in range(settings.breaker_failure_threshold):
        rt.breakers.record("https://hooks.example.com:443", "failure", was_probe=False)
    followup = deliverer.attempt(_envelope())
    assert followup is not None and followup.envelope.attempts == 0  # deferred, no attempt used
    status = rt.statuses.get("wh_dns_1")
    assert status is not None and status.last_error_type == "circuit_open"


def test_a_name_with_no_idna_form_is_dead_lettered_not_retried(settings, r) -> None:
    def unencodable(host: str, port: int) -> list[str]:
        raise UnicodeError("label too long")

    deliverer, rt = _deliverer(settings, unencodable)
    assert deliverer.attempt(_envelope()) is None
    entry = rt.dead_letters.get("wh_dns_1")
    assert entry is not None and entry.error_type == "validation"
