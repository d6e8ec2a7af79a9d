"""Prometheus metrics: one registry per daemon, and a Component that serves it over HTTP.

Other stages observe into the objects here (names are documented in docs/metrics.md); the policy
servers call ``metrics.policy_latency.labels(server="postfix").observe(seconds)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mailward.decisions.model import Action, Decision
from mailward.events import Event
from mailward.notify.health import SourceStatusLike

log = logging.getLogger(__name__)

# Latency of an in-line policy answer: sub-millisecond normally, seconds when tarpitting.
POLICY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "mailward_events",
            "Events processed, by kind and service.",
            ["kind", "service"],
            registry=r,
        )
        self.decisions = Counter(
            "mailward_decisions",
            "Decisions made, by action and rule.",
            ["action", "rule"],
            registry=r,
        )
        self.bans = Counter("mailward_bans", "Bans issued (addresses and prefixes).", registry=r)
        self.active_bans = Gauge("mailward_active_bans", "Bans currently in force.", registry=r)
        self.source_lag = Gauge(
            "mailward_source_lag_seconds",
            "Newest line time minus processed time.",
            ["source"],
            registry=r,
        )
        self.source_unread = Gauge(
            "mailward_source_unread_bytes",
            "Bytes written to a source not yet read.",
            ["source"],
            registry=r,
        )
        self.alerts = Counter(
            "mailward_alerts",
            "Alerts raised by the rules, by kind and severity.",
            ["kind", "severity"],
            registry=r,
        )
        self.alerts_held = Counter(
            "mailward_alerts_held", "Alerts held back by cooldowns or min_severity.", registry=r
        )
        self.deliveries = Counter(
            "mailward_alert_deliveries",
            "Notifications delivered, by channel.",
            ["channel"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "mailward_alert_delivery_failures",
            "Failed delivery attempts, by channel.",
            ["channel"],
            registry=r,
        )
        self.delivery_dropped = Counter(
            "mailward_alert_delivery_dropped",
            "Notifications dropped (spool full or too old), by channel.",
            ["channel"],
            registry=r,
        )
        self.outbox = Gauge(
            "mailward_alert_outbox",
            "Notifications waiting for delivery, by channel.",
            ["channel"],
            registry=r,
        )
        self.task_crashes = Counter(
            "mailward_task_crashes",
            "Daemon task crashes (each is restarted).",
            ["task"],
            registry=r,
        )
        self.policy_latency = Histogram(
            "mailward_policy_latency_seconds",
            "Time to answer one policy request.",
            ["server"],
            buckets=POLICY_BUCKETS,
            registry=r,
        )
        self.heartbeats = Counter(
            "mailward_heartbeats", "Dead-man's-switch pings, by result.", ["result"], registry=r
        )

    def observe_event(self, event: Event) -> None:
        self.events.labels(kind=event.kind, service=event.service.value).inc()

    def observe_decision(self, decision: Decision) -> None:
        self.decisions.labels(action=decision.action.value, rule=decision.rule).inc()
        if decision.action is Action.BAN:
            self.bans.inc()

    def observe_sources(self, statuses: Iterable[SourceStatusLike]) -> None:
        for st in statuses:
            self.source_lag.labels(source=st.name).set(st.lag_seconds or 0.0)
            self.source_unread.labels(source=st.name).set(st.unread_bytes or 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DaemonLike(Protocol):
    """What the metrics component needs from ``mailward.daemon.app.Daemon``."""

    def on_event(self, cb: Callable[[Event], Any]) -> None: ...
    def on_decision(self, cb: Callable[[Decision], Any]) -> None: ...
    def sources_status(self) -> list[Any]: ...


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics.listen: want host:port, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """Daemon component: counts events/decisions and serves ``/metrics`` on ``listen``."""

    name = "metrics"

    def __init__(self, metrics: Metrics, listen: str) -> None:
        self.metrics = metrics
        self.host, self.port = parse_listen(listen)
        self._runner: web.AppRunner | None = None
        self._daemon: DaemonLike | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self, daemon: DaemonLike | None) -> None:
        self._daemon = daemon
        if daemon is not None:
            daemon.on_event(self.metrics.observe_event)
            daemon.on_decision(self.metrics.observe_decision)
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        addr = addresses[0] if addresses else (self.host, self.port)
        self.bound = (str(addr[0]), int(addr[1]))
        log.info("metrics on http://%s:%d/metrics", *self.bound)

    async def _serve(self, request: web.Request) -> web.Response:
        if self._daemon is not None:
            try:
                self.metrics.observe_sources(self._daemon.sources_status())
            except Exception:  # a scrape must never take the daemon down
                log.exception("metrics: sources_status failed")
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
