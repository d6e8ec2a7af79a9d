"""``AlertManager``: the daemon component that runs the alert rules and feeds the channels.

It subscribes to events and decisions (cheap, synchronous rule updates), evaluates the time-based
rules and the source monitors every ``alerts.check_seconds``, takes task crashes from the
supervisor's ``on_crash`` hook, and hands gated, grouped messages to the isolated dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from mailward.clock import Clock, SystemClock
from mailward.config.model import Settings
from mailward.daemon.tasks import spawn
from mailward.decisions.model import Decision
from mailward.enrich.geoip import GeoLookup
from mailward.errors import MailwardError
from mailward.events import Event
from mailward.notify.alerts import AttackRules, LocationHistory, SqliteLocations
from mailward.notify.channels.apprise import AppriseNotifier
from mailward.notify.channels.base import Notifier
from mailward.notify.channels.sendmail import SendmailNotifier
from mailward.notify.channels.smtp import SmtpNotifier
from mailward.notify.dispatch import Dispatcher
from mailward.notify.gate import Gate
from mailward.notify.health import HealthRules, SourceStatusLike
from mailward.notify.metrics import Metrics
from mailward.notify.model import Alert, Message, Severity
from mailward.notify.render import render_alerts
from mailward.notify.spool import Spool

log = logging.getLogger(__name__)


class DaemonLike(Protocol):
    """The part of ``mailward.daemon.app.Daemon`` the alert manager uses."""

    def on_event(self, cb: Callable[[Event], Any]) -> None: ...
    def on_decision(self, cb: Callable[[Decision], Any]) -> None: ...
    def sources_status(self) -> Sequence[SourceStatusLike]: ...


def local_zone(name: str) -> tzinfo:
    if name == "local":
        zone = datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone
    return ZoneInfo(name)


def build_channels(settings: Settings) -> list[Notifier]:
    """The channels ``[notify]`` configures: sendmail (default), SMTP, apprise."""
    n = settings.notify
    channels: list[Notifier] = []
    if not n.enabled:
        return channels
    if n.sendmail:
        channels.append(
            SendmailNotifier(
                n.sendmail_path, sender=n.from_address, to=n.to, timeout=n.timeout_seconds
            )
        )
    if n.smtp_host:
        channels.append(
            SmtpNotifier(
                n.smtp_host,
                n.smtp_port,
                sender=n.from_address,
                to=n.to,
                security=n.smtp_security,
                username=n.smtp_username,
                password=n.smtp_password.get_secret_value() if n.smtp_password else None,
                verify=n.smtp_verify_tls,
                ca_file=n.smtp_ca_file,
                timeout=n.timeout_seconds,
            )
        )
    if n.apprise_urls:
        channels.append(
            AppriseNotifier(
                [u.get_secret_value() for u in n.apprise_urls], timeout=n.timeout_seconds
            )
        )
    return channels


class AlertManager:
    name = "alerts"

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        channels: Sequence[Notifier] | None = None,
        geo: GeoLookup | None = None,
        locations: LocationHistory | None = None,
        metrics: Metrics | None = None,
        spool: Spool | None = None,
        history: Callable[[], Any] | None = None,
        record: Callable[[Alert], None] | None = None,
    ) -> None:
        """``history`` opens a store (``counts_per_hour``) to seed the spike baseline at start,
        so a restart does not warm up again; ``record`` keeps each raised alert (for the digest)."""
        self.settings = settings
        self.history = history
        self.record = record
        self.clock = clock or SystemClock()
        self.metrics = metrics
        state = settings.general.state_dir / "notify.db"
        self.spool = spool or Spool(state)
        self._own_locations = SqliteLocations(self.spool.path) if locations is None else None
        self.rules = AttackRules(
            settings.alerts,
            tz=local_zone(settings.parsing.timezone),
            geo=geo,
            locations=locations if locations is not None else self._own_locations,
        )
        self.health = HealthRules(settings.alerts)
        n = settings.notify
        self.gate = Gate(
            self.spool,
            cooldown=n.cooldown_seconds,
            group_seconds=n.group_seconds,
            min_severity=Severity.parse(n.min_severity),
        )
        self.dispatcher = Dispatcher(
            build_channels(settings) if channels is None else channels,
            self.spool,
            clock=self.clock,
            timeout=n.timeout_seconds,
            max_pending=n.queue_size,
            retry_initial=n.retry_initial_seconds,
            retry_max=n.retry_max_seconds,
            max_age=n.spool_max_age_days * 86400,
            metrics=metrics,
        )
        self.raised: list[Alert] = []  # the last alerts raised, for `mailward status`/digest
        self._daemon: DaemonLike | None = None
        self._task: asyncio.Task[Any] | None = None
        self._errors = 0

    # -- component protocol --------------------------------------------------------------------

    async def start(self, daemon: DaemonLike | None) -> None:
        if self.history is not None:
            try:
                hours = await asyncio.to_thread(self.seed_baseline)
                log.info("alerts: spike baseline seeded with %d hours from the store", hours)
            except MailwardError as exc:  # e.g. no database yet on a fresh install
                log.info("alerts: no history to seed the spike baseline (%s); warming up", exc)
            except Exception:
                log.exception("alerts: cannot seed the spike baseline from the store")
        self._daemon = daemon
        if daemon is not None:
            daemon.on_event(self.on_event)
            daemon.on_decision(self.on_decision)
        self.dispatcher.start()
        self._task = spawn(self._loop(), name="alerts:tick")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._flush(force=True)
        await self.dispatcher.stop()
        self.close()

    def close(self) -> None:
        """Release the database handles (``stop`` does it; for managers never started)."""
        if self._own_locations is not None:
            self._own_locations.close()
        self.spool.close()

    def seed_baseline(self) -> int:
        """Load the last ``spike_history_weeks`` of hourly attempts from the store."""
        assert self.history is not None
        store = self.history()
        now = self.clock.now()
        try:
            rows = store.counts_per_hour(
                now - self.settings.alerts.spike_history_weeks * 7 * 86400,
                float(int(now // 3600) * 3600),
                self.settings.alerts.spike_kinds,
            )
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()
        hourly: dict[float, int] = {}
        for row in rows:
            hourly[row.hour] = hourly.get(row.hour, 0) + int(row.attempts)
        self.rules.spike.seed(hourly.items(), until=now)
        return len(hourly)

    # -- inputs --------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        self._guarded(lambda: self.rules.observe(event, self.clock.now()))

    def on_decision(self, decision: Decision) -> None:
        self._guarded(lambda: self.rules.decide(decision, self.clock.now()))

    def task_crashed(self, name: str, exc: BaseException) -> None:
        """The supervisor's ``on_crash`` hook."""
        if self.metrics:
            self.metrics.task_crashes.labels(task=name).inc()
        self._guarded(lambda: self.health.crashed(name, exc, self.clock.now()))

    def raise_alert(self, alert: Alert) -> None:
        """For other components (e.g. a circuit breaker) to alert through the same gate."""
        self._guarded(lambda: [alert])

    def send_now(self, message: Message) -> None:
        """Bypass the rules and the gate (digest, test notification)."""
        self.dispatcher.submit(message)

    def healthy(self) -> bool:
        """No source lagging or silent: what the heartbeat reports to the dead-man's switch."""
        return not self.health.problems

    # -- internals -----------------------------------------------------------------------------

    def _guarded(self, produce: Callable[[], list[Alert]]) -> None:
        # Alerting must never break the pipeline that feeds it.
        try:
            alerts = produce()
        except Exception:
            self._errors += 1
            if self._errors == 1 or self._errors % 100 == 0:
                log.exception("alerts: rule failed (%d so far)", self._errors)
            return
        if alerts:
            self._offer(alerts)

    def _offer(self, alerts: list[Alert]) -> None:
        now = self.clock.now()
        for alert in alerts:
            self.raised.append(alert)
            if self.record is not None:
                try:
                    self.record(alert)
                except Exception:
                    log.exception("alerts: cannot record alert %s", alert.key)
            if self.metrics:
                self.metrics.alerts.labels(kind=alert.kind, severity=alert.severity.label).inc()
            if not self.gate.offer(alert, now) and self.metrics:
                self.metrics.alerts_held.inc()
            log.warning("alert %s: %s", alert.severity.label, alert.title)
        del self.raised[:-200]
        self._flush()

    def _flush(self, *, force: bool = False) -> None:
        batch = self.gate.flush(self.clock.now(), force=force)
        if batch is not None:
            self.dispatcher.submit(render_alerts(batch.alerts, suppressed=batch.held))

    def check(self) -> None:
        """One evaluation of the time-based rules (the loop calls it; tests may too)."""
        now = self.clock.now()
        self._guarded(lambda: self.rules.tick(now))
        if self._daemon is not None:
            daemon = self._daemon

            def health() -> list[Alert]:
                statuses = list(daemon.sources_status())
                if self.metrics:
                    self.metrics.observe_sources(statuses)
                return self.health.check(statuses, now)

            self._guarded(health)
            engine = getattr(daemon, "engine", None)
            take = getattr(engine, "take_signals", None)
            if callable(take):
                self._guarded(
                    lambda: [a for sig in take(now) for a in self.rules.circuit(sig, now)]
                )
        self._flush()

    async def _loop(self) -> None:
        interval = self.settings.alerts.check_seconds
        while True:
            await asyncio.sleep(interval)
            self.check()


def components(
    settings: Settings,
    *,
    clock: Clock | None = None,
    geo: GeoLookup | None = None,
    metrics: Metrics | None = None,
    open_store: Callable[[], Any] | None = None,
    record: Callable[[Alert], None] | None = None,
) -> tuple[AlertManager, list[Any]]:
    """Everything ``[notify]``, ``[alerts]``, ``[digest]`` and ``[metrics]`` ask the daemon to run.

    Returns the AlertManager (wire ``daemon.on_task_crash(manager.task_crashed)``) and the list
    of components to ``daemon.add_component`` (the manager first). ``open_store`` opens a reader
    (spike baseline at start, daily digest); ``record`` receives every raised alert."""
    from mailward.notify.heartbeat import Heartbeat
    from mailward.notify.metrics import MetricsServer
    from mailward.notify.schedule import DailyDigest

    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    manager = AlertManager(
        settings, clock=clock, geo=geo, metrics=metrics, history=open_store, record=record
    )
    out: list[Any] = [manager]
    if settings.metrics.enabled:
        out.append(MetricsServer(metrics, settings.metrics.listen))
    n = settings.notify
    if n.heartbeat_url is not None:
        out.append(
            Heartbeat(
                n.heartbeat_url.get_secret_value(),
                n.heartbeat_seconds,
                healthy=manager.healthy,
                timeout=n.timeout_seconds,
                metrics=metrics,
            )
        )
    if settings.digest.enabled and open_store is not None:
        out.append(
            DailyDigest(
                open_store,
                manager.send_now,
                manager.spool,
                clock=clock,
                tz=local_zone(settings.parsing.timezone),
                hour=settings.digest.hour,
                chart=settings.digest.chart,
                geo=geo,
                top=settings.analyze.top,
                health=lambda: {
                    "open problems": ", ".join(manager.health.problems) or "none",
                    **{f"channel {k}": v for k, v in manager.dispatcher.status().items()},
                },
            )
        )
    return manager, out
