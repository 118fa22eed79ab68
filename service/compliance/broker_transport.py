"""kombu's Redis transport, made to survive a full Redis (``maxmemory`` with ``noeviction``).

kombu's bookkeeping writes (record a delivered message in ``unacked``, remove it on ack) raise
``OutOfMemoryError`` when Redis is full, and the error escapes Celery's event loop: the worker
stops with "Unrecoverable error" while nothing is wrong with it. Here a failed bookkeeping write
is logged and the in-memory state moves on as if it had succeeded:

- an ack that did not reach Redis leaves the message in ``unacked``: the broker restores it
  after the visibility timeout, and the worker then drops it (the webhook's record says it is
  settled);
- a delivery not recorded in ``unacked`` is run anyway; if its worker dies, the webhook's lease
  (``compliance.store.schedule``) brings it back.

Selected with the Celery setting ``broker_transport`` (``compliance.messaging``).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """Bookkeeping whose Redis writes may fail without ending the worker."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        """Record a delivered message in ``unacked``; on a refused write, only in memory."""
        try:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            _warn("record", exc)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: Any) -> None:
        """Remove an acked message from ``unacked``; on a refused write, leave it there."""
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            _warn("ack", exc)
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Reject (or requeue) a message; on a refused write, leave it in ``unacked``."""
        try:
            super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            _warn("reject", exc)
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel with the QoS above."""

    QoS = QoS


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with the channel above (same URLs and options)."""

    Channel = Channel


def _warn(what: str, exc: Exception) -> None:
    log.warning("broker bookkeeping write refused; the message stays where it was", extra={
        "operation": what, "error": f"{type(exc).__name__}: {exc}"[:300]})
