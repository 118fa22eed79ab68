"""Limits on client JSON in request bodies (payload, evidence, metadata, and every other field).

Pydantic refuses to serialize values nested past 255 levels and to parse JSON nested past about
200, and stored records and webhook envelopes wrap client JSON a few levels deeper, so a deep
value accepted by the API breaks later: a 500 at submission or a report whose record the worker
cannot read back. The depth is checked up front, without recursion, so the check
itself cannot exhaust the stack.

JSON text may also carry values that have no JSON form once parsed: ``"\\ud800"`` (a lone UTF-16
surrogate, which has no UTF-8 encoding, so no record holding it can be written) and ``NaN``,
``Infinity`` or ``1e400`` (Python's parser takes them; serializing writes ``null``). Both are
refused with a 422 naming the field, keys included, before anything is stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from compliance.api.errors import field_error, printable


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


def _no_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


NO_UTF8 = "string has no UTF-8 form (a lone UTF-16 surrogate such as \\ud800)"
NOT_FINITE = "NaN and infinite numbers (or numbers too large for a double, like 1e400) have no JSON form"


def unrepresentable(value: Any, field: str) -> tuple[str, str] | None:
    """The first (path, reason) in ``value`` that cannot be written back as JSON in UTF-8, or
    None. Iterative; call it after the depth check, as paths grow with the nesting."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _no_utf8(item):
                return path, NO_UTF8
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, NOT_FINITE
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{printable(str(key))}"
                if isinstance(key, str) and _no_utf8(key):
                    return child_path, f"key: {NO_UTF8}"
                stack.append((child, child_path))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}.{i}") for i, child in enumerate(item))
    return None


def check_json_values(value: Any, *, field: str) -> None:
    """422 naming the offending path when ``value`` holds a string with no UTF-8 form or a
    non-finite number."""
    found = unrepresentable(value, field)
    if found:
        raise field_error(*found)


def check_body(body: BaseModel, *, max_depth: int, free_form: Iterable[str] = ()) -> None:
    """Every check of a JSON request body: the nesting of its ``free_form`` fields first (the
    walk below keeps a path per value), then every field's strings and numbers."""
    for name in free_form:
        check_json_depth(getattr(body, name), limit=max_depth, field=f"body.{name}")
    for name in type(body).model_fields:
        check_json_values(getattr(body, name), field=f"body.{name}")


def integral(value: Any) -> Any:
    """For an integer field of a strict model: JSON's ``5.0`` is the integer 5 (JSON Schema says
    so), while ``5.5``, ``"5"`` and ``true`` stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
