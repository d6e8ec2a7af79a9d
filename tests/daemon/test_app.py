import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailward.clock import SystemClock
from mailward.config.model import Settings
from mailward.daemon.app import Component, Daemon
from mailward.daemon.ledger import MemoryLedger
from mailward.daemon.twins import ThresholdEngine, TwinParser
from mailward.decisions.model import Action, Decision
from mailward.enforcers.base import MemoryEnforcer
from mailward.errors import BackendUnavailable, InputError
from mailward.events import AuthFailure, Event, Service, normalise_ip
from mailward.sources.follow import FileFollower
from mailward.sources.live import Batch


def line(ip: str, ts: float | None = None, user: str = "bob") -> str:
    stamp = datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()
    return (
        f"{stamp} mx1 postfix/submission/smtpd[1]: warning: unknown[{ip}]: "
        f"SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    )


def make(
    tmp_path: Path, ledger: MemoryLedger | None = None, **kw: Any
) -> tuple[Daemon, MemoryEnforcer, MemoryLedger]:
    clock = SystemClock()
    enforcer = MemoryEnforcer(clock.now)
    ledger = ledger or MemoryLedger()
    settings = Settings.model_validate(
        {"enforce": {"batch_interval": 0.01}, "general": {"state_dir": str(tmp_path)}}
    )
    follower = FileFollower(tmp_path / "mail.log", poll_interval=0.01)
    daemon = Daemon(
        settings,
        clock=clock,
        enforcer=enforcer,
        store=ledger,
        engine=kw.pop("engine", ThresholdEngine(failures=3)),
        parser=kw.pop("parser", TwinParser()),
        sources=kw.pop("sources", [follower]),
        **kw,
    )
    return daemon, enforcer, ledger


async def until(cond, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_log_lines_become_bans_records_and_notifications(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("garbage line\n")
    daemon, enforcer, ledger = make(tmp_path)
    seen_events: list[Event] = []
    seen_decisions: list[Decision] = []
    daemon.on_event(seen_events.append)
    daemon.on_decision(seen_decisions.append)
    daemon.on_event(lambda e: 1 / 0, name="broken")  # never delays the ban
    await daemon.start()
    try:
        with log.open("a") as fh:
            for _ in range(3):
                fh.write(line("203.0.113.7"))
        await until(lambda: enforcer.banned("203.0.113.7"))
        await until(lambda: len(seen_decisions) == 1 and len(seen_events) == 3)
        assert ledger.event_count() == 3 and len(ledger.decisions) == 1
        assert "file:" + str(log) in ledger.positions
        [status] = daemon.sources_status()
        assert status.lines == 4 and status.events == 3 and status.unparsed == 1
        assert (
            status.unread_bytes == 0 and status.lag_seconds is not None and status.lag_seconds < 5
        )
        health = daemon.health()
        assert health["ok"] and health["active_bans"] == 1
        assert health["last_decision"]["target"] == "203.0.113.7"
        assert {t["name"] for t in health["tasks"]} >= {
            "pipeline",
            "enforce",
            "expire",
            f"source:file:{log}",
        }
        assert any(
            s["name"] == "event:broken" and s["failures"] == 3 for s in health["subscribers"]
        )
    finally:
        await daemon.shutdown()


async def test_restart_restores_bans_and_resumes_position(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("".join(line("203.0.113.7") for _ in range(3)))
    daemon, enforcer, ledger = make(tmp_path)
    await daemon.start()
    await until(lambda: enforcer.banned("203.0.113.7"))
    await daemon.shutdown()
    again, enforcer2, _ = make(tmp_path, ledger=ledger)
    await again.start()
    try:
        assert enforcer2.banned("203.0.113.7")  # restored from the ledger before any line
        await asyncio.sleep(0.1)
        assert ledger.event_count() == 3  # nothing read twice
        assert len(again.active_bans()) == 1
    finally:
        await again.shutdown()


async def test_backlog_events_are_judged_at_their_own_time(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    old = time.time() - 3 * 86400  # three days ago: a 1 h ban would long be over
    log.write_text("".join(line("198.51.100.4", old + i) for i in range(3)))
    daemon, enforcer, ledger = make(tmp_path)
    await daemon.start()
    try:
        await until(lambda: len(ledger.decisions) == 1)
        await asyncio.sleep(0.05)
        assert not enforcer.banned("198.51.100.4")
        assert ledger.decisions[0].until is not None and ledger.decisions[0].until < time.time()
    finally:
        await daemon.shutdown()


async def test_operator_ban_unban_and_safety(tmp_path: Path) -> None:
    daemon, enforcer, ledger = make(tmp_path, sources=[], parser=None)
    await daemon.start()
    try:
        d = await daemon.ban("2001:db8:1::/64", 60, "test")
        assert d.rule == "manual" and d.evidence == {"by": "operator"}
        assert enforcer.banned("2001:db8:1::5")  # enforced before ban() returned
        await daemon.ban("::ffff:192.0.2.1", None)
        assert enforcer.banned("192.0.2.1")
        with pytest.raises(InputError, match="own addresses"):
            await daemon.ban("127.0.0.0/24", 60)
        with pytest.raises(InputError, match="not an IP"):
            await daemon.ban("bob", 60)
        lifted = await daemon.unban(None)
        assert sorted(x.target for x in lifted) == ["192.0.2.1", "2001:db8:1::/64"]
        assert not enforcer.banned("192.0.2.1") and daemon.active_bans() == []
        assert ledger.active_decisions(time.time()) == []
    finally:
        await daemon.shutdown()


class FlakyEnforcer(MemoryEnforcer):
    fail = 2

    async def apply(self, decisions):  # type: ignore[no-untyped-def]
        if self.fail:
            self.fail -= 1
            raise BackendUnavailable("nft failed: simulated")
        await super().apply(decisions)


async def test_enforcement_failure_is_retried_and_reported(tmp_path: Path) -> None:
    clock = SystemClock()
    enforcer = FlakyEnforcer(clock.now)
    settings = Settings.model_validate({"enforce": {"batch_interval": 0.01}})
    daemon = Daemon(
        settings, clock=clock, enforcer=enforcer, store=MemoryLedger(), engine=ThresholdEngine()
    )
    await daemon.start()
    try:
        with pytest.raises(BackendUnavailable, match="not enforced yet"):
            await daemon.ban("203.0.113.50", 60)
        assert not daemon.health()["ok"]
        await until(lambda: enforcer.banned("203.0.113.50"), timeout=5)
        await until(lambda: daemon.health()["ok"])
        assert daemon.counters.enforce_errors >= 1 and not daemon._restore_pending
    finally:
        await daemon.shutdown()


class CrashingSource:
    kind = "test"
    name = "crashy"
    last_error = None

    def __init__(self) -> None:
        self.runs = 0

    def resume(self, position: str | None) -> None:
        self.position = position

    async def batches(self) -> AsyncIterator[Batch]:
        self.runs += 1
        if self.runs == 1:
            raise OSError("disk went away")
        yield Batch(source=self.name, lines=[(line("203.0.113.9").strip(), None)], position="p")  # type: ignore[list-item]
        await asyncio.Event().wait()

    def unread_bytes(self) -> int | None:
        return None

    def status(self) -> dict[str, Any]:
        return {}


class Recorder:
    name = "recorder"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.started: Daemon | None = None
        self.stopped = False

    async def start(self, daemon: Daemon) -> None:
        if self.fail:
            raise RuntimeError("port in use")
        self.started = daemon

    async def stop(self) -> None:
        self.stopped = True

    def status(self) -> dict[str, Any]:
        return {"fine": True}


async def test_crashed_source_restarts_and_components_are_isolated(tmp_path: Path) -> None:
    source = CrashingSource()
    crashes: list[str] = []
    good, bad = Recorder(), Recorder(fail=True)
    bad.name = "bad"
    daemon, _, ledger = make(tmp_path, sources=[source])
    daemon.supervisor.min_backoff = 0.01
    daemon.on_task_crash(lambda name, exc: crashes.append(f"{name}: {exc}"))
    daemon.add_component(good)
    daemon.add_component(bad)
    assert isinstance(good, Component)
    await daemon.start()
    try:
        await until(lambda: ledger.positions.get("crashy") == "p")
        assert crashes == ["source:crashy: disk went away"]
        assert good.started is daemon
        health = daemon.health()
        assert "component bad: RuntimeError: port in use" in health["problems"]
        assert {"name": "recorder", "error": None, "status": {"fine": True}} in health["components"]
        task = next(t for t in health["tasks"] if t["name"] == "source:crashy")
        assert task["restarts"] == 1
    finally:
        await daemon.shutdown()
    assert good.stopped


async def test_feed_from_component(tmp_path: Path) -> None:
    daemon, enforcer, ledger = make(tmp_path, sources=[], parser=None)
    await daemon.start()
    try:
        ev = TwinParser().parse(line("192.0.2.77"))
        assert ev is not None
        decisions = []
        for _ in range(3):
            decisions += await daemon.feed([ev])
        assert [d.target for d in decisions] == ["192.0.2.77"]
        await until(lambda: enforcer.banned("192.0.2.77"))
        assert ledger.event_count() == 3
    finally:
        await daemon.shutdown()


def test_sources_need_a_parser(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parser"):
        make(tmp_path, parser=None)


async def test_unknown_ban_action_not_enforced(tmp_path: Path) -> None:
    daemon, enforcer, _ = make(tmp_path, sources=[], parser=None)
    await daemon.start()
    try:
        await daemon.submit(
            [Decision(ts=time.time(), target="user:bob", action=Action.PROTECT_USER, rule="x")]
        )
        assert enforcer.blocked() == []
    finally:
        await daemon.shutdown()


async def test_component_intake_submit_event_and_decisions(tmp_path: Path) -> None:
    daemon, enforcer, ledger = make(tmp_path, sources=[], parser=None)
    decisions: list[Decision] = []
    daemon.on_decision(decisions.append)
    await daemon.start()
    try:
        ev = TwinParser().parse(line("192.0.2.88"))
        assert ev is not None
        for _ in range(3):
            daemon.submit_event(ev)  # sync, from a protocol handler
        await until(lambda: enforcer.banned("192.0.2.88"))
        d = Decision(
            ts=time.time(),
            target="198.51.100.0/24",
            action=Action.BAN,
            rule="policy",
            until=time.time() + 60,
        )
        daemon.submit_decisions([d])
        await until(lambda: enforcer.banned("198.51.100.9"))
        await until(lambda: len(ledger.decisions) == 2 and len(decisions) == 2)
        assert ledger.event_count() == 3
    finally:
        await daemon.shutdown()


async def test_lag_grows_while_lines_wait_and_not_after_quiet(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(line("203.0.113.1", time.time() - 3600))  # an old line: processing delay 1 h
    daemon, _, _ = make(tmp_path)
    await daemon.start()
    try:
        await until(lambda: daemon.sources_status()[0].lines == 1)
        st = daemon.sources_status()[0]
        assert 3590 < st.lag_seconds < 3700 and st.unread_bytes == 0  # the log's own delay
        with log.open("a") as fh:
            fh.write(line("203.0.113.2"))
        await until(lambda: daemon.sources_status()[0].lines == 2)
        assert daemon.sources_status()[0].lag_seconds < 5  # a fresh line after a quiet hour
        await daemon.supervisor.stop(names=["pipeline"])  # the pipeline dies silently...
        with log.open("a") as fh:
            fh.write(line("203.0.113.3"))
        await asyncio.sleep(0.5)
        st = daemon.sources_status()[0]
        assert st.lag_seconds >= 0.3, st  # ...and the lag shows it, growing
        assert not daemon.health()["ok"]
    finally:
        await daemon.shutdown()


class SlowEngine(ThresholdEngine):
    def observe(self, event, now):  # type: ignore[no-untyped-def]
        time.sleep(0.002)  # a detector that is slow on purpose
        return super().observe(event, now)


async def test_backlog_does_not_starve_the_event_loop(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("".join(line(f"10.0.{i // 256}.{i % 256}") for i in range(600)))
    daemon, _, ledger = make(tmp_path, engine=SlowEngine(failures=10**6))
    ticks_while_busy = 0

    async def ticker() -> None:
        nonlocal ticks_while_busy
        while True:
            await asyncio.sleep(0.005)
            if ledger.event_count() < 600:
                ticks_while_busy += 1

    await daemon.start()
    task = asyncio.ensure_future(ticker())
    try:
        await until(lambda: ledger.event_count() == 600, timeout=30)
        assert ticks_while_busy > 5  # the loop kept running other tasks during the backlog
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await daemon.shutdown()


async def test_retention_is_applied_at_start_and_then_periodically(tmp_path: Path) -> None:
    old = time.time() - 3 * 86400

    def stale(n: int) -> AuthFailure:
        return AuthFailure(
            ts=old + n, service=Service.SUBMISSION, ip=normalise_ip("192.0.2.1"), username="u"
        )

    ledger = MemoryLedger(retention_days=1)
    ledger.commit([stale(1), stale(2)], [], {})
    clock = SystemClock()
    settings = Settings.model_validate(
        {"general": {"state_dir": str(tmp_path)}, "daemon": {"prune_interval": 0.05}}
    )
    daemon = Daemon(
        settings,
        clock=clock,
        enforcer=MemoryEnforcer(clock.now),
        store=ledger,
        engine=ThresholdEngine(),
    )
    await daemon.start()
    try:
        await until(lambda: ledger.event_count() == 0)  # at start
        ledger.commit([stale(3)], [], {})
        await until(lambda: ledger.event_count() == 0)  # and again one interval later
        assert daemon.counters.prunes >= 2
        assert any(t["name"] == "prune" for t in daemon.health()["tasks"])
    finally:
        await daemon.shutdown()


async def test_heap_is_frozen_after_state_is_restored(tmp_path: Path) -> None:
    import gc

    gc.unfreeze()
    daemon, _, _ = make(tmp_path)
    await daemon.start()
    try:
        assert daemon.heap.freezes == 1 and gc.get_freeze_count() > 0
        assert daemon.health()["heap"]["frozen_objects"] == gc.get_freeze_count()
        assert any(t["name"] == "heap" for t in daemon.health()["tasks"])
    finally:
        await daemon.shutdown()
        gc.unfreeze()


def passdb_line(ip: str, user: str = "bob") -> str:
    """A session-less Dovecot passdb failure: the correlator holds it for its Postfix partner."""
    stamp = datetime.now(UTC).isoformat()
    return f"{stamp} mx1 dovecot: auth: passwd-file({user},{ip}): Password mismatch\n"


async def test_held_passdb_failure_is_released_on_a_quiet_log(tmp_path: Path) -> None:
    from mailward.config.model import ParsingSettings
    from mailward.parsers import Correlator, LineParser

    log = tmp_path / "mail.log"
    log.write_text("")
    daemon, _, ledger = make(
        tmp_path,
        parser=LineParser(ParsingSettings(timezone="UTC")),
        correlator=Correlator(hold=0.2),
    )
    await daemon.start()
    try:
        with log.open("a") as fh:
            fh.write(passdb_line("192.0.2.21"))
        # no further line arrives: the daemon's tick releases it after the hold
        await until(lambda: ledger.event_count() == 1, timeout=5)
        [event] = ledger.events
        assert isinstance(event, AuthFailure) and event.username == "bob"
    finally:
        await daemon.shutdown()
    assert ledger.event_count() == 1  # released once, not again by the shutdown flush


async def test_clean_stop_flushes_what_the_correlator_holds(tmp_path: Path) -> None:
    from mailward.config.model import ParsingSettings
    from mailward.parsers import Correlator, LineParser

    log = tmp_path / "mail.log"
    log.write_text("")
    daemon, _, ledger = make(
        tmp_path,
        parser=LineParser(ParsingSettings(timezone="UTC")),
        correlator=Correlator(hold=3600),
    )
    await daemon.start()
    with log.open("a") as fh:
        fh.write(passdb_line("192.0.2.22"))
    await until(lambda: daemon.counters.lines == 1)
    assert ledger.event_count() == 0  # held
    await daemon.shutdown()
    assert [e.kind for e in ledger.events] == ["auth_failure"]


async def test_report_and_its_log_line_are_counted_once(tmp_path: Path) -> None:
    from mailward.daemon.dedupe import ReportDedupe
    from mailward.events import Origin

    log = tmp_path / "mail.log"
    log.write_text("")
    daemon, enforcer, ledger = make(tmp_path, dedupe=ReportDedupe())
    await daemon.start()
    try:
        for user in ("bob", "carol"):
            daemon.submit_event(  # what the Dovecot auth-policy server feeds on a failed report
                AuthFailure(
                    ts=time.time(),
                    service=Service.SUBMISSION,
                    ip=normalise_ip("203.0.113.8"),
                    origin=Origin("dovecot-policy"),
                    username=user,
                )
            )
        await until(lambda: ledger.event_count() == 2)
        with log.open("a") as fh:  # the same two attempts, logged by Postfix, plus a third
            fh.write(line("203.0.113.8", user="bob"))
            fh.write(line("203.0.113.8", user="carol"))
            fh.write(line("203.0.113.8", user="dave"))
        await until(lambda: daemon.counters.lines == 3)
        await until(lambda: ledger.event_count() == 3)
        await asyncio.sleep(0.1)
        assert ledger.event_count() == 3  # 3 attempts, not 5
        assert enforcer.banned("203.0.113.8")  # threshold 3 reached with 3 real attempts
        assert daemon.health()["dedupe"]["dropped"] == 2
    finally:
        await daemon.shutdown()
