"""Filesystem backend: one file per key under a directory, written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compliance.reports.storage.base import ReportStorage, StorageError, StorageNotFoundError, check_key


class FilesystemStorage(ReportStorage):
    """Files under ``root``; a write goes to a temporary file that ``os.replace`` puts in place."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        """Write to a temp file in the target directory, fsync, then rename over the target."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        """Read the file."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageNotFoundError(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def keys_older_than(self, prefix: str, before: float) -> Iterator[str]:
        """Files under ``prefix`` modified before ``before`` (a write replaces the file, so its
        mtime is when the key was last written); half-written temp files count too."""
        top = self._root.joinpath(*prefix.strip("/").split("/"))
        try:
            for path in sorted(top.rglob("*")):
                if path.is_file() and path.stat().st_mtime < before:
                    yield path.relative_to(self._root).as_posix()
        except OSError as exc:
            raise StorageError(f"cannot list {prefix}: {exc}") from exc

    def delete(self, key: str) -> None:
        """Unlink the file."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        """The directory."""
        return {"backend": self.name, "directory": str(self._root.resolve())}
