"""Two versions of the code, interleaved: `bench/deliveries.py`'s "ours, 1 process" case run
alternately (A B, B A, A B, ...) against one Redis and one receiver, so a noisy machine hits both
alike. Each version is a source tree (a git worktree's ``service`` directory) put first on the
workers' PYTHONPATH; the webhooks are accepted by this checkout's code.

    git worktree add --detach /tmp/base main
    .venv/bin/python bench/ab_deliveries.py --a /tmp/base/service --b service --rounds 6

One JSON line per run (deliveries/s, worker and Redis CPU-ms per delivery, Redis commands per
delivery), then the medians and the per-round differences (B minus A).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import deliveries  # noqa: E402

from compliance.localredis import LocalRedis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", required=True, type=Path, help="source tree A (its service dir)")
    parser.add_argument("--b", required=True, type=Path, help="source tree B (its service dir)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--latency", type=float, default=0.0, help="receiver latency, ms")
    parser.add_argument("--in-flight", type=int, default=512)
    args = parser.parse_args()
    trees = {"A": str(args.a.resolve()), "B": str(args.b.resolve())}
    tmp = Path(tempfile.mkdtemp(prefix="compliance-ab-"))
    redis = LocalRedis(data_dir=tmp / "redis").start()
    receiver, ports = deliveries.start_receiver(args.latency, 16)
    runs: list[dict[str, float | str | int]] = []
    saved = os.environ.get("PYTHONPATH")
    try:
        for n in range(args.rounds):
            for name in ("A", "B") if n % 2 == 0 else ("B", "A"):
                os.environ["PYTHONPATH"] = trees[name]
                run = deliveries.run_ours(redis.url, ports, args.n, pool="threads",
                                          concurrency=args.in_flight, tmp=tmp)
                row: dict[str, float | str | int] = {
                    "variant": name, "round": n, "rate": round(run.rate),
                    "cpu_ms": round(run.cpu_ms, 3), "redis_cpu_ms": round(run.redis_cpu_ms, 3),
                    "redis_cmds": round(run.redis_cmds, 1)}
                print(json.dumps(row), flush=True)
                runs.append(row)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        receiver.terminate()
        receiver.wait()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for field in ("rate", "cpu_ms", "redis_cpu_ms", "redis_cmds"):
        a = {int(r["round"]): float(r[field]) for r in runs if r["variant"] == "A"}
        b = {int(r["round"]): float(r[field]) for r in runs if r["variant"] == "B"}
        diffs = [b[k] - a[k] for k in a]
        print(f"{field}: A median {statistics.median(a.values()):.3f}, B median "
              f"{statistics.median(b.values()):.3f}, B-A per round mean "
              f"{statistics.mean(diffs):+.3f} median {statistics.median(diffs):+.3f}")


if __name__ == "__main__":
    main()
