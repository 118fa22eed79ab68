"""S3-compatible backend (boto3): objects under a prefix in one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from compliance.reports.storage.base import ReportStorage, StorageError, StorageNotFoundError, check_key

_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Storage(ReportStorage):
    """One object per key at ``{prefix}{key}``; a PUT is atomic by S3's semantics."""

    name = "s3"

    def __init__(self, *, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0) -> None:
        if not bucket:
            raise StorageError("s3 storage needs COMPLIANCE_S3_BUCKET")
        self._bucket = bucket
        self._prefix = prefix
        self._endpoint = endpoint_url
        # Credentials and region come from boto3's usual chain (env, profile, IRSA, instance role).
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url,
            config=Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _key(self, key: str) -> str:
        return f"{self._prefix}{check_key(key)}"

    def put(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        """PUT the object."""
        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key(key), Body=data,
                                    ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        """GET the object."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._key(key))
            body: bytes = response["Body"].read()
            return body
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise StorageNotFoundError(key) from exc
            raise StorageError(f"cannot read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        """DELETE the object."""
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    def keys_older_than(self, prefix: str, before: float) -> Iterator[str]:
        """Objects under ``prefix`` whose LastModified is before ``before`` (a page at a time)."""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=f"{self._prefix}{prefix}")
            for page in pages:
                for obj in page.get("Contents", []):
                    if obj["LastModified"].timestamp() < before:
                        yield str(obj["Key"])[len(self._prefix):]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix}: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        """Bucket, prefix and endpoint."""
        return {"backend": self.name, "bucket": self._bucket, "prefix": self._prefix,
                "endpoint": self._endpoint or "aws"}
