"""``mailward run``: build the daemon from the configuration and run it until SIGTERM."""

from __future__ import annotations

import asyncio
import glob
import logging
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailward.cli.common import AppContext, fail, pass_app
from mailward.clock import SystemClock
from mailward.config.model import Settings
from mailward.daemon.app import Correlator, Daemon, Detector, Parser
from mailward.daemon.control import ControlServer
from mailward.daemon.dedupe import ReportDedupe
from mailward.daemon.ledger import Ledger, MemoryLedger
from mailward.daemon.systemd import SystemdNotifier
from mailward.daemon.tasks import spawn
from mailward.daemon.twins import ThresholdEngine, TwinParser
from mailward.detectors.engine import Engine
from mailward.detectors.history import StoreHistory
from mailward.enforcers.base import DryRunEnforcer, Enforcer, NullEnforcer
from mailward.enforcers.nftables import NftablesEnforcer
from mailward.enrich.geoip import open_geo
from mailward.errors import MailwardError
from mailward.parsers import Correlator as LogCorrelator
from mailward.parsers import LineParser
from mailward.sources.follow import COMPRESSED, FileFollower
from mailward.sources.journald import JournaldFollower
from mailward.sources.live import LiveSource
from mailward.storage.ledger import StoreLedger
from mailward.storage.reader import Alert as StoredAlert

if TYPE_CHECKING:
    from mailward.notify.model import Alert

log = logging.getLogger(__name__)

_ROTATED = re.compile(r"(\.\d+|-\d{8,10})$")


def open_ledger(settings: Settings) -> StoreLedger:
    """THE ledger: the shared history database (``settings.db_path``) that ``analyze``, the
    digest, reports and escalation read; events, decisions and positions commit together."""
    return StoreLedger(settings.db_path, retention_days=settings.storage.retention_days)


def make_enforcer(settings: Settings, *, dry_run: bool = False) -> Enforcer:
    clock = SystemClock()
    if dry_run or settings.enforce.backend == "dry-run":
        return DryRunEnforcer(clock.now)
    if settings.enforce.backend == "none":
        return NullEnforcer()
    return NftablesEnforcer(settings.enforce, clock=clock.now)


def file_sources(settings: Settings) -> list[LiveSource]:
    out: list[LiveSource] = []
    seen: set[str] = set()
    for spec in settings.sources.files:
        if glob.has_magic(spec):
            paths = [
                p
                for p in sorted(glob.glob(spec))
                if not p.endswith(COMPRESSED) and not _ROTATED.search(p)
            ]
        else:
            paths = [spec]
        for path in paths:
            if path not in seen:
                seen.add(path)
                out.append(
                    FileFollower(
                        Path(path),
                        poll_interval=settings.daemon.poll_interval,
                        start_at_end=settings.daemon.start_at_end,
                    )
                )
    if settings.sources.journald:
        out.append(
            JournaldFollower(
                settings.sources.journald_units, start_at_end=settings.daemon.start_at_end
            )
        )
    return out


def real_pipeline(settings: Settings, ledger: Ledger) -> tuple[Parser, Correlator, Detector]:
    """The parser, correlator and detector engine from their own stages; escalation counts the
    ledger's earlier bans, so a restart does not reset it."""
    geo = open_geo(settings.geoip)
    history = StoreHistory(ledger, keep=settings.detectors.escalation.history)
    engine = Engine.from_settings(settings, geo=geo, history=history)
    return LineParser(settings.parsing), LogCorrelator(), engine


def build_daemon(
    settings: Settings,
    *,
    dry_run: bool = False,
    pipeline: str = "real",
    ledger: Ledger | None = None,
) -> Daemon:
    if ledger is None:
        ledger = (
            MemoryLedger(retention_days=settings.storage.retention_days)
            if dry_run
            else open_ledger(settings)
        )
    if pipeline == "twin":
        parser: Parser = TwinParser()
        correlator: Correlator | None = None
        engine: Detector = ThresholdEngine()
    else:
        parser, correlator, engine = real_pipeline(settings, ledger)
    daemon = Daemon(
        settings,
        clock=SystemClock(),
        enforcer=make_enforcer(settings, dry_run=dry_run),
        store=ledger,
        engine=engine,
        parser=parser,
        correlator=correlator,
        sources=file_sources(settings),
        notifier=SystemdNotifier(),
        dedupe=ReportDedupe() if settings.policy.dovecot.enabled else None,
    )
    add_components(daemon, settings, dry_run=dry_run)
    return daemon


class AlertRecorder:
    """``record=`` for the AlertManager: each raised alert goes into the store's alerts table
    (the digest lists them) through the ledger's writer connection, off the event loop. Also a
    component, added before the manager so it stops after it: ``stop()`` waits for the writes
    still running, so an alert raised during shutdown is kept before the ledger closes."""

    name = "alert-record"

    def __init__(self, ledger: StoreLedger) -> None:
        self.ledger = ledger
        self._pending: set[asyncio.Task[None]] = set()
        self.recorded = 0
        self.failures = 0

    def __call__(self, alert: Alert) -> None:
        row = StoredAlert(
            ts=alert.ts,
            kind=alert.kind,
            severity=alert.severity.label,
            message=alert.title,
            key=alert.key,
            data={"details": list(alert.details), "facts": dict(alert.facts)},
        )
        task = spawn(self._write(row), name="record:alert")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, row: StoredAlert) -> None:
        try:
            await asyncio.to_thread(self.ledger.add_alert, row)
            self.recorded += 1
        except Exception:
            self.failures += 1
            log.exception("cannot record alert %s", row.key)

    async def start(self, daemon: Daemon) -> None:
        return None

    async def stop(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def status(self) -> dict[str, int]:
        return {"recorded": self.recorded, "failures": self.failures, "pending": len(self._pending)}


def add_components(daemon: Daemon, settings: Settings, *, dry_run: bool = False) -> None:
    """What the configuration asks the daemon to run beside its pipeline: the control socket,
    the policy servers, alerting (alerts recorded in the store), metrics and the digest. A dry
    run keeps no state and sends no alerts: it gets the control socket and the policy servers
    only."""
    from mailward.policy import policy_components

    daemon.add_component(ControlServer(settings.control_socket))
    metrics = None
    if not dry_run:
        from mailward.notify.manager import components as alerting
        from mailward.notify.metrics import Metrics
        from mailward.storage.reader import SqliteReader

        ledger = daemon.store
        recorder = AlertRecorder(ledger) if isinstance(ledger, StoreLedger) else None
        if recorder is not None:
            daemon.add_component(recorder)
        metrics = Metrics()  # one registry: alerting, the /metrics endpoint, policy latency
        manager, extra = alerting(
            settings,
            clock=daemon.clock,
            geo=getattr(daemon.engine, "geo", None),
            metrics=metrics,
            open_store=lambda: SqliteReader(settings.db_path),
            record=recorder,
        )
        daemon.on_task_crash(manager.task_crashed)
        for component in extra:
            daemon.add_component(component)
        from mailward.policy.outage import OutageWatch

        daemon.add_component(OutageWatch(manager.raise_alert, clock=daemon.clock))
    geo = getattr(daemon.engine, "geo", None)
    country = geo.country if geo is not None else None
    for server in policy_components(settings, country=country, metrics=metrics):
        daemon.add_component(server)


async def serve(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        await daemon.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@click.command("run")
@click.option(
    "--dry-run", is_flag=True, help="Log what would be banned; keep no state, touch no firewall."
)
@click.option(
    "--pipeline",
    type=click.Choice(["real", "twin"]),
    default="real",
    show_default=True,
    help="'twin' swaps the parser and detectors for the in-package test twins.",
)
@pass_app
def run(app: AppContext, dry_run: bool, pipeline: str) -> None:
    """Run the defender: follow the logs, detect, ban, answer the control socket."""
    settings = app.settings
    logging.getLogger("mailward").setLevel(settings.general.log_level.upper())
    daemon: Daemon | None = None
    try:
        daemon = build_daemon(settings, dry_run=dry_run, pipeline=pipeline)
        asyncio.run(serve(daemon))
    except MailwardError as exc:
        fail(str(exc))
    except PermissionError as exc:
        fail(f"permission denied: {exc.filename or exc}")
    finally:
        if daemon is not None:
            daemon.store.close()


COMMANDS = [run]
