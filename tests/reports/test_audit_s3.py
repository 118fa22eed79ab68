"""The audit trail archived to S3 (a real S3-compatible server, moto in its own process): the
chain runs on from the segments into Redis, and `compliance audit verify` names an entry edited
or deleted in a stored segment."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import boto3
import pytest

from compliance.reports import audit_archive
from compliance.reports.storage.s3 import S3Storage
from compliance.settings import Settings
from compliance.wiring import Container
from tests.reports.conftest import S3Server

pytestmark = pytest.mark.timeout(120)


def test_segments_in_s3_carry_the_chain_and_a_changed_one_is_named(
        s3_server: S3Server, s3_bucket: str, settings: Settings, env: dict[str, str],
        aws_env: dict[str, str]) -> None:
    container = Container(settings)
    storage = S3Storage(bucket=s3_bucket, prefix="svc/", endpoint_url=s3_server.url)
    for n in range(130):
        container.audit.record(actor="key_s3", action="breaker.reset", tenant="t1" if n % 2 else None,
                               target=f"https://h{n}.example:443")
    result = audit_archive.archive(container.audit, storage, before=container.clock() + 1,
                                   segment_entries=100)
    assert result.archived == 130 and result.segments_written == 2
    assert container.audit.size() == 0
    container.audit.record(actor="key_s3", action="breaker.reset", target="after")
    verdict = audit_archive.verify(container.audit, storage)
    assert verdict.ok and verdict.checked == 131 and verdict.segments == 2

    # one entry of the first segment edited, in the bucket
    raw = boto3.client("s3", endpoint_url=s3_server.url)
    key = "svc/audit/segments/000000000001-000000000100.jsonl.gz"
    lines = [json.loads(x) for x in gzip.decompress(
        raw.get_object(Bucket=s3_bucket, Key=key)["Body"].read()).splitlines()]
    lines[76]["target"] = "https://elsewhere.example:443"
    raw.put_object(Bucket=s3_bucket, Key=key,
                   Body=gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    s3_env = {**os.environ, **env, **aws_env, "COMPLIANCE_STORAGE_BACKEND": "s3",
              "COMPLIANCE_S3_BUCKET": s3_bucket, "COMPLIANCE_S3_PREFIX": "svc/",
              "COMPLIANCE_S3_ENDPOINT_URL": s3_server.url}
    out = subprocess.run([sys.executable, "-m", "compliance.cli.main", "audit", "verify"],
                         env=s3_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["bad_seq"] == 77 and summary["where"] == "audit/segments/000000000001-000000000100.jsonl.gz"
    # the (edited) line deleted instead: the rest of the segment is as archived
    del lines[76]
    raw.put_object(Bucket=s3_bucket, Key=key,
                   Body=gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    problem = audit_archive.verify(container.audit, storage).problem
    assert problem is not None and problem.seq == 77 and "missing" in problem.reason
    container.close()
