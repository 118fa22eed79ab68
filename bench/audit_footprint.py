"""Redis bytes an audit entry holds until it is archived, and the archive and verify rates.

Run: `.venv/bin/python bench/audit_footprint.py --n 100000`. Appends n delivery outcomes the way
the delivery engine does (batches of 8 in one script call, three tenants), then reports the Redis
memory they hold (log stream, tenant index streams, head) per entry, measured as the memory freed
by deleting those keys; then archives them all to a filesystem storage and verifies the chain.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.localredis import LocalRedis  # noqa: E402
from compliance.reports import audit_archive  # noqa: E402
from compliance.reports.storage.filesystem import FilesystemStorage  # noqa: E402
from compliance.settings import Settings  # noqa: E402
from compliance.store import keys  # noqa: E402
from compliance.store.audit import DELIVERED, SYSTEM_DELIVERY, AuditEvent  # noqa: E402
from compliance.wiring import Container  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="compliance-audit-bench-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    try:
        container = Container(Settings(redis_url=redis.url, storage_dir=tmp / "storage"))
        r = container.redis
        tenants = ["tenant-a", "tenant-b", None]
        started = time.perf_counter()
        for start in range(0, args.n, args.batch):
            events = [AuditEvent(actor=SYSTEM_DELIVERY, action=DELIVERED, at=time.time(),
                                 tenant=tenants[i % 3], target=f"wh_{i:032x}",
                                 correlation_id=f"{i:08x}-7c3c-4b1e-8000-000000000000",
                                 detail={"attempts": 1})
                      for i in range(start, min(start + args.batch, args.n))]
            pipe = r.pipeline(transaction=True)
            container.audit.append_on(pipe, events)
            pipe.execute()
        append_s = time.perf_counter() - started
        audit_keys = [keys.AUDIT_LOG, keys.AUDIT_HEAD, keys.AUDIT_INDEXES,
                      *r.smembers(keys.AUDIT_INDEXES)]  # type: ignore[misc]
        usage = {k: int(r.memory_usage(k, samples=0) or 0) for k in audit_keys}  # type: ignore[arg-type]
        r.bgsave()  # keep the dump out of the measurement below
        time.sleep(0.5)
        before = int(r.info("memory")["used_memory"])  # type: ignore[index]
        dump = {k: r.dump(k) for k in audit_keys}
        r.delete(*audit_keys)
        freed = before - int(r.info("memory")["used_memory"])  # type: ignore[index]
        for k, v in dump.items():
            if v is not None:
                r.restore(k, 0, v)  # type: ignore[arg-type]
        storage = FilesystemStorage(tmp / "storage")
        started = time.perf_counter()
        result = audit_archive.archive(container.audit, storage, before=time.time() + 1,
                                       segment_entries=container.settings.audit_segment_entries)
        archive_s = time.perf_counter() - started
        started = time.perf_counter()
        verdict = audit_archive.verify(container.audit, storage)
        verify_s = time.perf_counter() - started
        stored = sum(p.stat().st_size for p in (tmp / "storage" / "audit").rglob("*") if p.is_file())
        print(f"| entries | log stream B/entry | tenant indexes B/entry | freed by deleting B/entry "
              f"| append (batches of {args.batch}) /s | archive /s | segment B/entry | verify /s |")
        print("|---|---|---|---|---|---|---|---|")
        indexes = sum(v for k, v in usage.items() if k.startswith("compliance:index:audit:")
                      and k != keys.AUDIT_INDEXES)
        print(f"| {args.n} | {usage[keys.AUDIT_LOG] / args.n:.1f} | {indexes / args.n:.1f} "
              f"| {freed / args.n:.1f} | {args.n / append_s:.0f} | {result.archived / archive_s:.0f} "
              f"| {stored / args.n:.1f} | {verdict.checked / verify_s:.0f} |")
        assert verdict.ok, verdict.problem
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
