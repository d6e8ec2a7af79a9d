from __future__ import annotations

import asyncio

from aiohttp import web
from tests.notify.sinks import free_port

from mailward.notify.heartbeat import Heartbeat
from mailward.notify.metrics import Metrics


async def test_pings_while_healthy_and_stops_when_not() -> None:
    pings: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        pings.append(request.path)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/ping/abc", ping)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state = {"healthy": True}
    metrics = Metrics()
    beat = Heartbeat(
        f"http://127.0.0.1:{port}/ping/abc", 0.05, healthy=lambda: state["healthy"], metrics=metrics
    )
    await beat.start()
    try:
        while len(pings) < 3:
            await asyncio.sleep(0.01)
        state["healthy"] = False
        while beat.skipped < 1:
            await asyncio.sleep(0.01)
        seen = len(pings)
        while beat.skipped < 4:
            await asyncio.sleep(0.01)
        assert len(pings) == seen  # withheld: the switch on the other side will fire
    finally:
        await beat.stop()
        await runner.cleanup()
    assert metrics.heartbeats.labels(result="sent")._value.get() >= 3


async def test_unreachable_switch_is_counted_not_raised() -> None:
    beat = Heartbeat(f"http://127.0.0.1:{free_port()}/x", 60, timeout=2)
    await beat.start()
    try:
        assert await beat.beat() is False
        assert beat.failures >= 1
    finally:
        await beat.stop()
