from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Service, normalise_ip
from mailward.notify.metrics import Metrics, MetricsServer, parse_listen


@dataclass
class Status:
    name: str
    newest_line_ts: float | None = 10.0
    processed_ts: float | None = 5.0
    lag_seconds: float = 5.0
    unread_bytes: int = 1234
    last_error: str | None = None


class FakeDaemon:
    def __init__(self) -> None:
        self.event_cbs: list[Any] = []
        self.decision_cbs: list[Any] = []

    def on_event(self, cb: Any) -> None:
        self.event_cbs.append(cb)

    def on_decision(self, cb: Any) -> None:
        self.decision_cbs.append(cb)

    def sources_status(self) -> list[Status]:
        return [Status("/var/log/mail.log")]


async def test_endpoint_serves_events_bans_lag_and_policy_latency() -> None:
    metrics = Metrics()
    daemon = FakeDaemon()
    server = MetricsServer(metrics, "127.0.0.1:0")
    await server.start(daemon)
    try:
        for cb in daemon.event_cbs:
            cb(AuthFailure(ts=1, service=Service.IMAP, ip=normalise_ip("192.0.2.1"), username="a"))
        for cb in daemon.decision_cbs:
            cb(Decision(ts=1, target="192.0.2.1", action=Action.BAN, rule="short_ban"))
        metrics.policy_latency.labels(server="postfix").observe(0.0003)
        assert server.bound is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.bound[1]}/metrics") as resp:
                assert resp.status == 200
                body = await resp.text()
    finally:
        await server.stop()
    assert 'mailward_events_total{kind="auth_failure",service="imap"} 1.0' in body
    assert "mailward_bans_total 1.0" in body
    assert 'mailward_decisions_total{action="ban",rule="short_ban"} 1.0' in body
    assert 'mailward_source_lag_seconds{source="/var/log/mail.log"} 5.0' in body
    assert 'mailward_source_unread_bytes{source="/var/log/mail.log"} 1234.0' in body
    assert 'mailward_policy_latency_seconds_bucket{le="0.0005",server="postfix"} 1.0' in body


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9617") == ("127.0.0.1", 9617)
    assert parse_listen("[::1]:9617") == ("::1", 9617)
    with pytest.raises(ValueError, match="metrics.listen"):
        parse_listen("localhost")
