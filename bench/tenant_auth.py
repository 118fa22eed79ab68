"""What a tenant key costs the API's key check, against an environment key.

Run: `.venv/bin/python bench/tenant_auth.py`. One process, a local redis-server: resolves each
kind of key 5,000 times through ``resolve_async`` (what every request's auth dependency calls),
with the tenant-key cache on (the default 5 s) and off (0: one Redis round trip per request).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from compliance.api.principal import resolve_async
from compliance.localredis import LocalRedis, free_port
from compliance.settings import Settings
from compliance.wiring import Container

N = 5000


def main() -> None:
    """Print microseconds per key check for each key kind and cache setting."""
    server = LocalRedis(data_dir=Path(tempfile.mkdtemp()), port=free_port()).start()
    try:
        for cache in (5.0, 0.0):
            settings = Settings(redis_url=server.url, admin_api_keys=[SecretStr("a" * 32)],
                                producer_api_keys=[SecretStr("p" * 32)],
                                tenant_encryption_keys=[SecretStr(Fernet.generate_key().decode())],
                                tenant_key_cache_seconds=cache)
            container = Container(settings)
            tenant, _ = container.tenant_store.create("bench")
            _, key = container.tenant_store.issue_key(tenant.tenant_id)

            async def per_check(presented: str, c: Container = container,
                                s: Settings = settings) -> float:
                aredis = c.async_redis()
                start = time.perf_counter()
                for _ in range(N):
                    assert await resolve_async(s, presented, c.tenants, aredis) is not None
                await aredis.aclose()
                return (time.perf_counter() - start) / N * 1e6

            env_us = asyncio.run(per_check("p" * 32))
            tenant_us = asyncio.run(per_check(key))
            print(f"tenant key cache {cache:>3} s: environment key {env_us:6.1f} us, "
                  f"tenant key {tenant_us:6.1f} us per request")
            container.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
