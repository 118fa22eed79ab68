"""Remote-control commands a worker answers beside Celery's own (``celery inspect ...``).

``engine_in_flight``: the deliveries this worker's asyncio engine holds. Celery's ``inspect
active`` lists the tasks its pool runs, and the engine's deliveries are not pool tasks, so the
operator asks this too before it marks pods with a deletion cost (an idle-looking pod may hold
hundreds of deliveries): ``celery -A compliance.worker.celery_app inspect engine_in_flight``.
"""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command

from compliance.worker.signals import engine_in_flight as _held


@inspect_command()  # type: ignore[misc]
def engine_in_flight(state: Any) -> dict[str, int]:
    """Deliveries the delivery engine of this worker holds now."""
    return {"in_flight": _held()}
