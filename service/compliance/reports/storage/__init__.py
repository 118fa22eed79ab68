"""Report storage: the ``ReportStorage`` interface, its errors and the configured backend."""

from __future__ import annotations

from compliance.reports.storage.base import (
    ReportStorage,
    StorageError,
    StorageNotFoundError,
    document_key,
    evidence_key,
)
from compliance.settings import Settings

__all__ = ["ReportStorage", "StorageError", "StorageNotFoundError", "build_storage", "document_key",
           "evidence_key"]


def build_storage(settings: Settings) -> ReportStorage:
    """The backend ``settings.storage_backend`` names; opens no connection."""
    if settings.storage_backend == "s3":
        from compliance.reports.storage.s3 import S3Storage

        return S3Storage(bucket=settings.s3_bucket, prefix=settings.s3_prefix,
                         endpoint_url=settings.s3_endpoint_url or None)
    from compliance.reports.storage.filesystem import FilesystemStorage

    return FilesystemStorage(settings.storage_dir)
