"""Limits on free-form JSON in request bodies (payload, evidence, metadata).

Pydantic refuses to serialize values nested past 255 levels and to parse JSON nested past about
200, and stored records and webhook envelopes wrap client JSON a few levels deeper, so a deep
value accepted by the API breaks later: a 500 at submission or a report whose record the worker
cannot read back. The depth is checked up front, without recursion, so the check
itself cannot exhaust the stack.
"""

from __future__ import annotations

from typing import Any

from compliance.api.errors import field_error


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects/arrays more than ``limit`` levels deep.

    A scalar has depth 0, ``{}`` and ``[]`` depth 1, ``{"a": [1]}`` depth 2. Iterative, and it
    stops at the first container past ``limit``.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return False


def check_json_depth(value: Any, *, limit: int, field: str) -> None:
    """422 naming ``field`` when ``value`` is nested deeper than ``limit``."""
    if json_depth_exceeds(value, limit):
        raise field_error(field, f"JSON nested deeper than {limit} levels")
