"""The storage interface and the key layout shared by every backend."""

from __future__ import annotations

import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


class StorageError(Exception):
    """The backend failed (unreachable, unwritable, refused)."""


class StorageNotFoundError(StorageError):
    """No object under that key."""


def evidence_key(report_id: str) -> str:
    """Where a report's evidence is kept until (and after) it is evaluated."""
    return f"evidence/{report_id}.json"


def document_key(report_id: str) -> str:
    """Where a report's generated document is kept."""
    return f"reports/{report_id}.json"


# What retention expires: generated documents and the evidence they were made from.
EXPIRING_PREFIXES = ("reports/", "evidence/")


def check_key(key: str) -> str:
    """Refuse keys that could escape the storage root (``..``, absolute paths, odd characters)."""
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class ReportStorage(ABC):
    """Keeps evidence and report documents as bytes under slash-separated keys."""

    name: str = "storage"

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        """Store ``data`` under ``key`` in one piece (readers never see a partial object)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; StorageNotFoundError when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""

    @abstractmethod
    def keys_older_than(self, prefix: str, before: float) -> Iterator[str]:
        """Keys under ``prefix`` last written before ``before`` (epoch seconds)."""

    def expire(self, *, before: float) -> dict[str, int]:
        """Delete documents and evidence last written before ``before``; counts per prefix."""
        removed: dict[str, int] = {}
        for prefix in EXPIRING_PREFIXES:
            stale = list(self.keys_older_than(prefix, before))  # list first: no delete mid-walk
            for key in stale:
                self.delete(key)
            removed[prefix.rstrip("/")] = len(stale)
        return removed

    def describe(self) -> dict[str, Any]:
        """Where this backend keeps things (for /health)."""
        return {"backend": self.name}

    def probe(self) -> dict[str, Any]:
        """Write, read back and delete a small object; raises when any step fails."""
        key = f"_health/{uuid.uuid4().hex}"
        payload = f"probe {time.time()}".encode()
        self.put(key, payload, content_type="text/plain")
        try:
            if self.get(key) != payload:
                raise StorageError("read back different bytes than written")
        finally:
            self.delete(key)
        return {"status": "up", **self.describe()}
