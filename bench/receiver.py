"""A loopback webhook receiver for benchmarks: aiohttp, fixed latency, counts requests."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def main(port: int, latency_ms: float) -> None:
    count = 0
    in_flight = 0  # requests being answered right now: how many deliveries the sender overlaps

    async def hook(request: web.Request) -> web.Response:
        nonlocal count, in_flight
        in_flight += 1
        try:
            await request.read()
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
        finally:
            in_flight -= 1
        count += 1
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"count": count, "in_flight": in_flight})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
