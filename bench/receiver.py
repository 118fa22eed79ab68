"""A loopback webhook receiver for benchmarks: aiohttp, fixed latency, counts requests.

Usage: ``receiver.py PORT[,PORT...] LATENCY_MS``. Each port is a destination of its own (the
per-destination cap counts scheme, host and port); the counters cover them all. ``POST
/mode?status=503`` switches the answer (a storm), ``GET /stats`` tells what it saw: requests
answered, answered 2xx, in flight now, and the most in flight at once.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def main(ports: list[int], latency_ms: float) -> None:
    count = 0
    ok = 0
    in_flight = 0  # requests being answered right now: how many deliveries the sender overlaps
    peak = 0
    status = 200

    async def hook(request: web.Request) -> web.Response:
        nonlocal count, ok, in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await request.read()
            if latency_ms:
                await asyncio.sleep(latency_ms / 1000)
        finally:
            in_flight -= 1
        count += 1
        ok += 200 <= status < 300
        return web.Response(text="ok", status=status)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"count": count, "ok": ok, "in_flight": in_flight, "peak": peak})

    async def mode(request: web.Request) -> web.Response:
        nonlocal status, peak
        status = int(request.query.get("status", "200"))
        peak = 0
        return web.json_response({"status": status})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/mode", mode)
    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main([int(p) for p in sys.argv[1].split(",")], float(sys.argv[2]))
