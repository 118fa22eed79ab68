"""Queue signals: a message on the delivery queue that says "webhook X is due", nothing more.

A signal is a Celery task message (so the seed's ``celery inspect`` and ``purge`` keep working,
and a Celery worker thread can run it), built here rather than by ``send_task``: kombu's publish
costs two round trips and most of a millisecond of CPU per message, and a signal must be able to
go out in the same transaction as the record it points at. ``signal_message`` writes exactly what
``send_task`` would (tested against it); report tasks still go through Celery.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery

from compliance.messaging import DELIVER_TASK, REPORT_TASK

# What every signal's body says after its argument: no callbacks, no chain, no chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def signal_message(webhook_id: str, *, queue: str, origin: str, reply_to: str) -> str:
    """The kombu message (JSON, as kombu's Redis transport stores it) of one delivery task."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[webhook_id], {}, _EMBED]).encode()
    argsrepr = f"<webhook {webhook_id}>"
    message: dict[str, Any] = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": DELIVER_TASK, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": origin, "ignore_result": None,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            # Read by the asyncio engine's take script (Lua has no base64 for the body).
            "webhook_id": webhook_id,
        },
        "properties": {
            "correlation_id": task_id, "reply_to": reply_to, "argsrepr": argsrepr,
            "kwargsrepr": "{}", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message)


class Dispatcher:
    """Publishes delivery signals on the delivery queue, and report tasks sent again."""

    def __init__(self, celery: Celery, client: redis.Redis, *, queue: str, queue_key: str) -> None:
        self._celery = celery
        self._r = client
        self._queue = queue
        self._queue_key = queue_key
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self._reply_to = str(uuid.uuid4())

    def message(self, webhook_id: str) -> str:
        """The signal of one webhook (for a caller that pushes it with its own writes)."""
        return signal_message(webhook_id, queue=self._queue, origin=self._origin,
                              reply_to=self._reply_to)

    def signal(self, webhook_ids: Iterable[str]) -> int:
        """One message per id, pushed in one round trip; returns how many."""
        messages = [self.message(webhook_id) for webhook_id in webhook_ids]
        if messages:
            self._r.lpush(self._queue_key, *messages)
        return len(messages)

    def resend_reports(self, report_ids: Iterable[str], *, queue: str) -> int:
        """Send report tasks again (their first message was lost); returns how many."""
        sent = 0
        with self._celery.producer_or_acquire() as producer:
            for report_id in report_ids:
                self._celery.send_task(REPORT_TASK, args=[report_id], queue=queue,
                                       producer=producer, argsrepr=f"<report {report_id}>",
                                       kwargsrepr="{}")
                sent += 1
        return sent
