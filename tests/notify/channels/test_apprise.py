from __future__ import annotations

import json

import pytest
from aiohttp import web
from tests.notify.sinks import free_port

from mailward.errors import BackendUnavailable, ConfigError
from mailward.notify.channels.apprise import AppriseNotifier
from mailward.notify.model import Message, Severity


async def test_apprise_json_webhook_reaches_a_local_http_server() -> None:
    got: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        channel = AppriseNotifier([f"json://127.0.0.1:{port}/hook"], timeout=5)
        await channel.send(
            Message(subject="breach?", text="alice from 192.0.2.1", severity=Severity.CRITICAL)
        )
    finally:
        await runner.cleanup()
    assert got[0]["title"] == "breach?" and got[0]["message"] == "alice from 192.0.2.1"
    assert got[0]["type"] == "failure"


async def test_apprise_failure_and_bad_url() -> None:
    channel = AppriseNotifier([f"json://127.0.0.1:{free_port()}/hook"], timeout=2)
    with pytest.raises(BackendUnavailable):
        await channel.send(Message(subject="s", text="t"))
    with pytest.raises(ConfigError, match=r"notify.apprise_urls\[0\]"):
        AppriseNotifier(["nonsense-scheme://x"])
