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

Selected with the Celery setting ``broker_transport`` (``compliance.messaging``):
``Transport`` for a plain Redis URL, ``SentinelTransport`` for a primary found through Redis
Sentinel (the same QoS on top of kombu's ``SentinelChannel``).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.sentinel
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


class SentinelChannel(kombu_redis.SentinelChannel):  # type: ignore[misc]
    """kombu's Sentinel channel with the QoS above, taking every sentinel from one option.

    kombu reads the sentinels from a ``;``-separated broker URL, and on a connection error it
    switches to the next of those URLs, which also switches the transport to kombu's own (the
    URL scheme names it), losing this QoS. So the broker URL names one sentinel and the
    ``sentinels`` transport option (``[[host, port], ...]``) names them all.
    """

    QoS = QoS
    from_transport_options = (*kombu_redis.SentinelChannel.from_transport_options,  # type: ignore[assignment]
                              "sentinels")
    sentinels: list[list[Any]] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        if not self.sentinels:
            return super()._sentinel_managed_pool(asynchronous)  # type: ignore[no-untyped-call]
        params = self._connparams(asynchronous)  # type: ignore[no-untyped-call]
        params.pop("host", None)
        params.pop("port", None)
        manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [(str(host), int(port)) for host, port in self.sentinels],
            min_other_sentinels=getattr(self, "min_other_sentinels", 0),
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None), **params)
        # kombu closes these in _disconnect_pools.
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("'master_name' transport option must be specified.")
        credentials = {k: params[k] for k in ("username", "password") if k in params}
        pool = manager.master_for(master_name, redis.Redis, **credentials)  # type: ignore[no-untyped-call]
        return pool.connection_pool


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    """kombu's Sentinel transport with the channel above."""

    Channel = SentinelChannel


def _warn(what: str, exc: Exception) -> None:
    log.warning("broker bookkeeping write refused; the message stays where it was", extra={
        "operation": what, "error": f"{type(exc).__name__}: {exc}"[:300]})
