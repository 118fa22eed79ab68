"""Storage backends: the filesystem, and S3 against a real moto server process."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.reports.storage import StorageError, StorageNotFoundError, build_storage
from compliance.reports.storage.filesystem import FilesystemStorage
from compliance.reports.storage.s3 import S3Storage
from tests.reports.conftest import S3Server


def roundtrip(storage) -> None:
    storage.put("reports/rpt_1.json", b'{"a":1}')
    assert storage.get("reports/rpt_1.json") == b'{"a":1}'
    storage.put("reports/rpt_1.json", b'{"a":2}')  # overwrite
    assert storage.get("reports/rpt_1.json") == b'{"a":2}'
    storage.delete("reports/rpt_1.json")
    storage.delete("reports/rpt_1.json")  # absent is fine
    with pytest.raises(StorageNotFoundError):
        storage.get("reports/rpt_1.json")
    for bad in ("../etc/passwd", "/abs", "a/../b", "a//b", "a b"):
        with pytest.raises(ValueError, match="invalid storage key"):
            storage.put(bad, b"x")
    assert storage.probe()["status"] == "up"


def test_filesystem_roundtrip_and_probe(tmp_path: Path):
    storage = FilesystemStorage(tmp_path / "store")
    roundtrip(storage)
    assert storage.describe()["directory"] == str((tmp_path / "store").resolve())


def test_filesystem_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path, monkeypatch):
    storage = FilesystemStorage(tmp_path)
    storage.put("reports/r.json", b"old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("compliance.reports.storage.filesystem.os.replace", crash)
    with pytest.raises(StorageError, match="disk full"):
        storage.put("reports/r.json", b"new")
    monkeypatch.undo()
    assert storage.get("reports/r.json") == b"old"  # the reader never sees half a write
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["r.json"]


def test_filesystem_outage_is_a_storage_error(tmp_path: Path):
    (tmp_path / "blocked").write_text("a file where the directory should be")
    storage = FilesystemStorage(tmp_path / "blocked")
    with pytest.raises(StorageError, match="cannot write"):
        storage.put("reports/r.json", b"x")
    with pytest.raises(StorageError):
        storage.probe()


def test_s3_roundtrip_against_a_real_server(s3_server: S3Server, s3_bucket: str):
    storage = S3Storage(bucket=s3_bucket, prefix="tenant-a/", endpoint_url=s3_server.url)
    roundtrip(storage)
    storage.put("evidence/rpt_2.json", b"{}")
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server.url)
            .list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["tenant-a/evidence/rpt_2.json"]  # the prefix is honoured, the probe cleaned up


def test_s3_errors_are_storage_errors(s3_server: S3Server, s3_bucket: str, settings):
    missing = S3Storage(bucket="no-such-bucket", endpoint_url=s3_server.url)
    with pytest.raises(StorageError):
        missing.put("reports/r.json", b"x")
    configured = build_storage(settings.model_copy(update={
        "storage_backend": "s3", "s3_bucket": s3_bucket, "s3_endpoint_url": s3_server.url}))
    assert configured.probe()["bucket"] == s3_bucket
    with pytest.raises(StorageError, match="COMPLIANCE_S3_BUCKET"):
        build_storage(settings.model_copy(update={"storage_backend": "s3", "s3_bucket": ""}))


def test_s3_server_down_is_a_storage_error(tmp_path: Path, aws_env):
    server = S3Server(tmp_path / "moto.log").start()
    bucket = server.new_bucket()
    storage = S3Storage(bucket=bucket, endpoint_url=server.url, connect_timeout=1, read_timeout=2)
    storage.put("reports/r.json", b"x")
    server.stop()
    with pytest.raises(StorageError, match="cannot read"):
        storage.get("reports/r.json")
