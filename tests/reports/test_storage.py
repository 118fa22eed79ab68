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


def test_s3_expiry_removes_only_old_documents_and_evidence_under_its_prefix(
        s3_server: S3Server, s3_bucket: str) -> None:
    """Retention on a real S3 API: LastModified decides; other prefixes and objects stay."""
    import time

    import boto3

    storage = S3Storage(bucket=s3_bucket, prefix="svc/", endpoint_url=s3_server.url)
    raw = boto3.client("s3", endpoint_url=s3_server.url)
    raw.put_object(Bucket=s3_bucket, Key="someone-else/reports/rpt_old.json", Body=b"{}")
    for key in ("reports/rpt_old.json", "evidence/rpt_old.json", "_health/old"):
        storage.put(key, b"{}")

    def modified() -> dict[str, float]:
        listed = raw.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
        return {o["Key"]: o["LastModified"].timestamp() for o in listed}

    # S3 keeps LastModified to the second: the new objects must be written a later second.
    oldest = max(modified().values())
    deadline = time.monotonic() + 5
    while time.time() < oldest + 1.01:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for key in ("reports/rpt_new.json", "evidence/rpt_new.json"):
        storage.put(key, b"{}")
    boundary = modified()["svc/reports/rpt_new.json"]
    assert storage.expire(before=boundary) == {"reports": 1, "evidence": 1}
    assert sorted(modified()) == ["someone-else/reports/rpt_old.json", "svc/_health/old",
                                  "svc/evidence/rpt_new.json", "svc/reports/rpt_new.json"]
    assert storage.expire(before=boundary) == {"reports": 0, "evidence": 0}


def test_filesystem_expiry_keeps_writes_in_progress_and_young_files(tmp_path: Path) -> None:
    import os
    import time

    storage = FilesystemStorage(tmp_path)
    storage.put("reports/old.json", b"{}")
    storage.put("reports/new.json", b"{}")
    (tmp_path / "reports" / ".new.json.abc.tmp").write_bytes(b"half")  # a write in progress
    stale_tmp = tmp_path / "evidence" / ".gone.json.xyz.tmp"  # left by a crashed writer
    stale_tmp.parent.mkdir()
    stale_tmp.write_bytes(b"half")
    old = time.time() - 7200
    for path in (tmp_path / "reports" / "old.json", stale_tmp):
        os.utime(path, (old, old))
    assert storage.expire(before=time.time() - 3600) == {"reports": 1, "evidence": 1}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".new.json.abc.tmp", "new.json"]
