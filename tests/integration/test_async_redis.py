"""The asyncio client every engine and the API build: hiredis packing against a real Redis."""

from __future__ import annotations

import asyncio

from compliance.redis_client import PackedConnection, create_async_redis

SCRIPT = "return {KEYS[1], ARGV[1], ARGV[2], redis.call('incrbyfloat', KEYS[1], ARGV[2])}"


def test_the_async_client_packs_with_hiredis_and_round_trips(settings, r):
    async def run() -> list[object]:
        client = create_async_redis(settings)
        try:
            pipe = client.pipeline(transaction=True)
            pipe.set("text", "é ü")
            pipe.config_get("maxmemory-policy")
            pipe.eval(SCRIPT, 1, "counter", "x", 1.25)
            replies = await pipe.execute()
            kinds = {type(c) for c in client.connection_pool._available_connections}
            return [replies, kinds]
        finally:
            await client.aclose()

    (replies, kinds) = asyncio.run(run())
    assert kinds == {PackedConnection}
    assert replies[0] is True and "maxmemory-policy" in replies[1]
    assert replies[2] == ["counter", "x", "1.25", "1.25"]
    assert r.get("text") == "é ü"
