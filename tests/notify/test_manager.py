"""The real failure, simulated: mailward's source stops advancing while the mail log keeps
growing (or a detector task keeps crashing). A notice must reach a real SMTP server (aiosmtpd on
127.0.0.1, STARTTLS + AUTH, password from a $file secret) and a local sendmail binary."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.notify.helpers import fail, ok
from tests.notify.sinks import read_outbox, sendmail_stub, smtp_sink

from mailward.clock import ManualClock, SystemClock
from mailward.config import load
from mailward.config.model import Settings
from mailward.daemon.app import Daemon
from mailward.daemon.ledger import MemoryLedger
from mailward.daemon.tasks import Supervisor
from mailward.daemon.twins import ThresholdEngine, TwinParser
from mailward.decisions.model import Decision
from mailward.detectors.engine import Engine
from mailward.enforcers.base import MemoryEnforcer
from mailward.events import Event
from mailward.notify.channels.base import MemoryNotifier
from mailward.notify.manager import AlertManager, build_channels, components
from mailward.notify.metrics import Metrics
from mailward.notify.model import Alert, Severity
from mailward.sources.follow import FileFollower
from mailward.storage.sqlite import SqliteStore


@dataclass
class SourceStatus:
    name: str
    newest_line_ts: float | None
    processed_ts: float | None
    lag_seconds: float
    unread_bytes: int
    last_error: str | None = None


class TailingDaemon:
    """A stand-in daemon with one real file source: it reads new lines while ``healthy`` and
    stops advancing (like the stuck banning daemon) when not, while the file keeps growing."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.processed_ts: float | None = None
        self.healthy = True
        self.events: list[Callable[[Event], Any]] = []
        self.decisions: list[Callable[[Decision], Any]] = []

    def on_event(self, cb: Callable[[Event], Any]) -> None:
        self.events.append(cb)

    def on_decision(self, cb: Callable[[Decision], Any]) -> None:
        self.decisions.append(cb)

    def _newest(self) -> float | None:
        lines = self.log.read_text().splitlines()
        return float(lines[-1].split(" ", 1)[0]) if lines else None

    def sources_status(self) -> list[SourceStatus]:
        size = self.log.stat().st_size
        if self.healthy:
            data = self.log.read_text()[self.offset :]
            self.offset += len(data)
            for line in data.splitlines():
                self.processed_ts = float(line.split(" ", 1)[0])
        newest = self._newest()
        lag = (newest - self.processed_ts) if newest and self.processed_ts else 0.0
        return [SourceStatus(str(self.log), newest, self.processed_ts, lag, size - self.offset)]


async def _append_forever(log: Path) -> None:
    while True:
        with log.open("a") as fh:
            fh.write(f"{time.time():.3f} mx1 postfix/smtpd[1]: connect from unknown[192.0.2.9]\n")
        await asyncio.sleep(0.1)


def settings_for(tmp: Path, **sections: dict[str, Any]) -> Settings:
    tree: dict[str, Any] = {"general": {"state_dir": str(tmp / "state")}}
    tree.update(sections)
    return Settings.model_validate(tree)


async def test_stalled_source_alert_reaches_real_smtp_and_sendmail(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    (tmp_path / "smtp.pw").write_text("s3cret\n")
    log = tmp_path / "mail.log"
    log.write_text("")
    with smtp_sink(tmp_path, user="alerts", password="s3cret") as (sink, port, ca):
        config = tmp_path / "mailward.toml"
        config.write_text(
            f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
            f'[notify]\nto = ["ops@example.org"]\nsendmail_path = "{script}"\n'
            f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_username = "alerts"\n'
            f'smtp_password = {{ "$file" = "{tmp_path / "smtp.pw"}" }}\nsmtp_ca_file = "{ca}"\n'
            "group_seconds = 0\n"
            "[alerts]\ncheck_seconds = 0.2\nsource_lag_seconds = 2\n"
        )
        settings = load(config, env={})
        assert [c.name for c in build_channels(settings)] == ["sendmail", "smtp"]
        daemon = TailingDaemon(log)
        manager = AlertManager(settings, metrics=Metrics())
        await manager.start(daemon)
        writer = asyncio.get_running_loop().create_task(_append_forever(log))
        try:
            await asyncio.sleep(1.0)
            assert sink.messages == [] and read_outbox(outbox) == []  # healthy: silence
            assert manager.healthy()
            daemon.healthy = False  # the source stops advancing; the log keeps growing
            # The configured time: lag threshold 2 s + one check interval; generous margin.
            await asyncio.wait_for(sink.arrived.wait(), 2 + 0.2 + 10)
            while not read_outbox(outbox):
                await asyncio.sleep(0.05)
            assert not manager.healthy()  # the heartbeat is withheld from now on
        finally:
            writer.cancel()
            await manager.stop()
    [mail] = sink.messages
    assert "CRITICAL" in mail["Subject"] and f"behind on source {log}" in mail["Subject"]
    body = mail.get_body(("plain",))
    assert body is not None and "NOT being detected or banned" in body.get_content()
    [local] = read_outbox(outbox)
    assert local["Subject"] == mail["Subject"]
    assert local["To"] == "ops@example.org"


async def test_crashing_detector_task_reaches_smtp_and_sendmail_once(tmp_path: Path) -> None:
    """A detector that keeps raising, restarted by the daemon's real Supervisor: one notice per
    cooldown, delivered to both the SMTP server and sendmail."""
    script, outbox = sendmail_stub(tmp_path)
    with smtp_sink() as (sink, port, _):
        settings = settings_for(
            tmp_path,
            notify={
                "group_seconds": 0,
                "sendmail_path": str(script),
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_security": "none",
                "to": ["ops@example.org"],
            },
        )
        manager = AlertManager(settings)
        await manager.start(None)
        supervisor = Supervisor(on_crash=manager.task_crashed, min_backoff=0.01, max_backoff=0.02)
        crashes = 0

        async def detector() -> None:
            nonlocal crashes
            crashes += 1
            raise KeyError("state corrupted")

        supervisor.supervise("detector", detector)
        try:
            await asyncio.wait_for(sink.arrived.wait(), 10)
            while not read_outbox(outbox) or crashes < 5:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            await supervisor.stop()
            await manager.stop()
    assert crashes >= 5
    [mail] = sink.messages  # the cooldown holds the repeats back
    assert "task 'detector' crashed and was restarted" in mail["Subject"]
    body = mail.get_body(("plain",))
    assert body is not None and "KeyError: 'state corrupted'" in body.get_content()
    assert len(read_outbox(outbox)) == 1


async def test_restart_does_not_resend_and_rules_see_events_and_decisions(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, notify={"group_seconds": 0}, alerts={"breach_min_failures": 3}
    )
    first = MemoryNotifier()
    manager = AlertManager(settings, channels=[first])
    daemon = TailingDaemon(tmp_path / "x.log")
    (tmp_path / "x.log").write_text("")
    await manager.start(daemon)
    now = time.time()
    for i in range(3):
        for cb in daemon.events:
            cb(fail(now + i, "203.0.113.7"))
    for cb in daemon.events:
        cb(ok(now + 5, "203.0.113.7"))
    await asyncio.wait_for(first.arrived.wait(), 5)
    await manager.stop()
    assert (
        first.sent[0].severity is Severity.CRITICAL and "POSSIBLE BREACH" in first.sent[0].subject
    )
    # A restart replays the same history: the ledger on disk holds the repeat back.
    second = MemoryNotifier()
    manager = AlertManager(settings, channels=[second])
    await manager.start(None)
    for i in range(3):
        manager.on_event(fail(now + i, "203.0.113.7"))
    manager.on_event(ok(now + 5, "203.0.113.7"))
    await asyncio.sleep(0.3)
    await manager.stop()
    assert second.sent == []


async def test_a_failing_rule_never_breaks_the_pipeline(tmp_path: Path) -> None:
    manager = AlertManager(settings_for(tmp_path), channels=[MemoryNotifier()])

    def boom(event: Event, now: float) -> list[Alert]:
        raise RuntimeError("rule bug")

    manager.rules.observe = boom  # type: ignore[method-assign]
    manager.on_event(fail(1, "192.0.2.1"))  # must not raise
    manager.close()


def test_components_follow_the_config(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        metrics={"enabled": True},
        digest={"enabled": True},
        notify={"heartbeat_url": "https://hc-ping.com/uuid"},
    )
    manager, parts = components(settings, open_store=lambda: None)
    assert [p.name for p in parts] == ["alerts", "metrics", "heartbeat", "digest"]
    assert parts[0] is manager
    manager.close()
    manager, parts = components(settings_for(tmp_path))
    assert [p.name for p in parts] == ["alerts"]
    manager.close()


class StuckLedger(MemoryLedger):
    """A ledger whose writes hang after the first few (a locked database): the daemon's
    pipeline waits on it, the source stops advancing, and the log keeps growing."""

    def __init__(self, ok_commits: int) -> None:
        super().__init__()
        self.ok_commits = ok_commits
        self.release = threading.Event()

    def commit(self, events: Any, decisions: Any, positions: Any) -> None:
        if self.commits >= self.ok_commits:
            self.release.wait(60)
        super().commit(events, decisions, positions)


async def _append_sasl_failures(log: Path) -> None:
    i = 0
    while True:
        stamp = datetime.now(UTC).isoformat()
        with log.open("a") as fh:
            fh.write(
                f"{stamp} mx1 postfix/submission/smtpd[{100 + i}]: warning: unknown[192.0.2.{i % 250 + 1}]: "
                "SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info@example.org\n"
            )
        i += 1
        await asyncio.sleep(0.05)


async def test_real_daemon_whose_pipeline_stalls_alerts_within_the_configured_time(
    tmp_path: Path,
) -> None:
    """The real Daemon and FileFollower: the store hangs, the source falls behind while the log
    grows, and the lag alert reaches the SMTP server and sendmail."""
    script, outbox = sendmail_stub(tmp_path)
    log = tmp_path / "mail.log"
    log.write_text("")
    with smtp_sink() as (sink, port, _):
        settings = settings_for(
            tmp_path,
            notify={
                "group_seconds": 0,
                "sendmail_path": str(script),
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_security": "none",
                "to": ["ops@example.org"],
            },
            alerts={"check_seconds": 0.2, "source_lag_seconds": 2},
        )
        ledger = StuckLedger(ok_commits=3)
        clock = SystemClock()
        daemon = Daemon(
            settings,
            clock=clock,
            enforcer=MemoryEnforcer(clock.now),
            store=ledger,
            engine=ThresholdEngine(),
            parser=TwinParser(),
            sources=[FileFollower(log, poll_interval=0.05)],
        )
        manager, parts = components(settings, clock=clock)
        daemon.on_task_crash(manager.task_crashed)
        for part in parts:
            daemon.add_component(part)
        await daemon.start()
        writer = asyncio.get_running_loop().create_task(_append_sasl_failures(log))
        try:
            await asyncio.wait_for(sink.arrived.wait(), 2 + 0.2 + 20)
            while not read_outbox(outbox):
                await asyncio.sleep(0.05)
            [status] = daemon.sources_status()
            assert status.unread_bytes or status.lag_seconds and status.lag_seconds > 2
        finally:
            writer.cancel()
            ledger.release.set()
            await daemon.shutdown()
    lag_mails = [m for m in sink.messages if "behind on source" in m["Subject"]]
    assert lag_mails and "CRITICAL" in lag_mails[0]["Subject"]
    assert any("behind on source" in m["Subject"] for m in read_outbox(outbox))


async def test_real_engine_circuit_breaker_reaches_the_channel(tmp_path: Path) -> None:
    """The detector engine's circuit breaker opens during a flood of bans; the manager polls
    the engine's signals and a critical alert goes out."""
    settings = settings_for(
        tmp_path,
        notify={"group_seconds": 0},
        alerts={"check_seconds": 0.1},
        detectors={"safety": {"max_bans_per_minute": 5}},
    )
    clock = SystemClock()
    engine = Engine(settings.detectors)
    daemon = Daemon(
        settings,
        clock=clock,
        enforcer=MemoryEnforcer(clock.now),
        store=MemoryLedger(),
        engine=engine,
    )
    channel = MemoryNotifier()
    manager = AlertManager(settings, clock=clock, channels=[channel])
    daemon.add_component(manager)
    await daemon.start()
    try:
        now = time.time()
        await daemon.feed([fail(now, f"203.0.113.{i}") for i in range(1, 21) for _ in range(6)])
        await asyncio.wait_for(channel.arrived.wait(), 10)
        await asyncio.sleep(0.3)
    finally:
        await daemon.shutdown()
    subjects = [m.subject for m in channel.sent]
    assert any("circuit breaker STOPPED new bans" in s and "CRITICAL" in s for s in subjects)


async def test_restart_seeds_the_spike_baseline_from_the_store(tmp_path: Path) -> None:
    """After a restart the spike rule needs no warm-up: the hourly history comes from the store
    (hours without attempts are zeros), and the incident's spike alerts at once."""
    now = float(int(time.time() // 3600) * 3600 + 1800)
    store = SqliteStore(tmp_path / "mailward.db")
    store.add_events([fail(now - k * 3600 * 3, "198.51.100.7") for k in range(1, 8 * 28)])
    store.close()
    clock = ManualClock(now)
    channel = MemoryNotifier()
    recorded: list[Alert] = []
    manager = AlertManager(
        settings_for(tmp_path, notify={"group_seconds": 0}),
        clock=clock,
        channels=[channel],
        history=lambda: SqliteStore(tmp_path / "mailward.db"),
        record=recorded.append,
    )
    await manager.start(None)
    try:
        assert manager.rules.spike.baseline.hours >= 27 * 24  # four weeks, zeros included
        exp = manager.rules.spike.baseline.expect(now)
        assert exp is not None and exp.basis == "hour of week"
        for i in range(60):
            manager.on_event(fail(now + i * 20, "203.0.113.5"))
        clock.advance(1200)
        manager.check()
        await asyncio.wait_for(channel.arrived.wait(), 5)
    finally:
        await manager.stop()
    assert "Spike: 60 login attempts" in channel.sent[0].subject
    assert [a.kind for a in recorded] == ["login_spike"]


async def test_fresh_install_without_a_database_warms_up_quietly(tmp_path: Path) -> None:
    from mailward.storage.reader import SqliteReader

    manager = AlertManager(
        settings_for(tmp_path),
        channels=[MemoryNotifier()],
        history=lambda: SqliteReader(tmp_path / "missing.db"),
    )
    await manager.start(None)
    await manager.stop()
    assert manager.rules.spike.baseline.hours == 0
