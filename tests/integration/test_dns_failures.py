"""DNS at delivery time (real Redis stores, the real engine; only the resolver is scripted):
a resolver failure may pass, so it is retried like a refused connection; an address the guard
forbids is still dead-lettered at once as `validation`."""

from __future__ import annotations

import socket

import pytest

from compliance.delivery.engine import AttemptOutcome, Deliverer
from compliance.delivery.models import Envelope
from compliance.store.breakers import BreakerResult
from compliance.wiring import Container


def _deliverer(settings, resolver) -> tuple[Deliverer, Container]:
    container = Container(settings, resolver=resolver)
    return container.deliverer, container


def _envelope() -> Envelope:
    return Envelope(webhook_id="wh_dns_1", url="https://hooks.example.com/x", event="e", payload={})


@pytest.mark.parametrize("error", [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
                                   socket.gaierror(socket.EAI_NONAME, "Name or service not known")])
def test_a_resolver_failure_is_retried_not_dead_lettered(settings, r, error) -> None:
    def failing(host: str, port: int) -> list[str]:
        raise error

    deliverer, rt = _deliverer(settings, failing)
    assert deliverer.attempt(_envelope()) is AttemptOutcome.RETRY
    status = rt.statuses.get("wh_dns_1")
    assert status is not None and status.status == "retrying" and status.attempts == 1
    assert status.last_error_type == "connection"
    assert rt.dead_letters.get("wh_dns_1") is None


def test_a_forbidden_address_is_still_dead_lettered_at_once(settings, r) -> None:
    deliverer, rt = _deliverer(settings, lambda host, port: ["10.0.0.7"])
    assert deliverer.attempt(_envelope()) is AttemptOutcome.DEAD_LETTERED
    entry = rt.dead_letters.get("wh_dns_1")
    assert entry is not None and entry.error_type == "validation"


def test_while_the_breaker_is_open_nothing_is_resolved_and_the_webhook_waits(settings, r) -> None:
    def must_not_resolve(host: str, port: int) -> list[str]:
        raise AssertionError("resolved while the breaker was open")

    deliverer, rt = _deliverer(settings, must_not_resolve)
    for _ in range(settings.breaker_failure_threshold):
        rt.breakers.record("https://hooks.example.com:443", BreakerResult.FAILURE, was_probe=False)
    assert deliverer.attempt(_envelope()) is AttemptOutcome.DEFERRED
    status = rt.statuses.get("wh_dns_1")
    assert status is not None and status.last_error_type == "circuit_open"
    assert status.attempts == 0  # deferred, no attempt used


def test_a_name_with_no_idna_form_is_dead_lettered_not_retried(settings, r) -> None:
    def unencodable(host: str, port: int) -> list[str]:
        raise UnicodeError("label too long")

    deliverer, rt = _deliverer(settings, unencodable)
    assert deliverer.attempt(_envelope()) is AttemptOutcome.DEAD_LETTERED
    entry = rt.dead_letters.get("wh_dns_1")
    assert entry is not None and entry.error_type == "validation"
