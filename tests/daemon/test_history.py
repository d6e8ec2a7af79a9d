import asyncio
import time
from pathlib import Path
from typing import Any

from mailward.clock import SystemClock
from mailward.config.model import Settings
from mailward.daemon.app import Daemon
from mailward.daemon.history import StoreWriter
from mailward.daemon.ledger import MemoryLedger
from mailward.daemon.twins import ThresholdEngine, TwinParser
from mailward.enforcers.base import MemoryEnforcer
from mailward.storage.aio import AsyncStore
from mailward.storage.reader import SqliteReader

LINE = (
    "2026-11-21T10:15:02.000000+00:00 mx1 postfix/submission/smtpd[1]: warning: "
    "unknown[203.0.113.45]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=bob"
)


class FlakyStore:
    def __init__(self) -> None:
        self.fail = 1
        self.events: list[Any] = []
        self.decisions: list[Any] = []
        self.closed = False

    async def write(self, fn: Any) -> Any:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        return fn(self)

    def add_events(self, events: Any) -> int:
        self.events.extend(events)
        return len(events)

    def add_decision(self, decision: Any) -> int:
        self.decisions.append(decision)
        return 1

    async def close(self) -> None:
        self.closed = True


def make_daemon() -> tuple[Daemon, MemoryEnforcer]:
    clock = SystemClock()
    enforcer = MemoryEnforcer(clock.now)
    daemon = Daemon(
        Settings(),
        clock=clock,
        enforcer=enforcer,
        store=MemoryLedger(),
        engine=ThresholdEngine(failures=2),
    )
    return daemon, enforcer


async def test_events_and_decisions_reach_the_store_even_after_a_failure() -> None:
    store = FlakyStore()

    async def open_store() -> Any:
        return store

    writer = StoreWriter(open_store, interval=0.02)
    daemon, _ = make_daemon()
    daemon.add_component(writer)
    await daemon.start()
    try:
        ev = TwinParser().parse(LINE)
        assert ev is not None
        await daemon.feed([ev, ev])
        deadline = time.monotonic() + 3
        while len(store.events) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(store.events) == 2 and len(store.decisions) == 1
        assert writer.status()["failures"] == 1 and writer.status()["pending"] == 0
    finally:
        await daemon.shutdown()
    assert store.closed


async def test_real_sqlite_store(tmp_path: Path) -> None:
    async def open_store() -> AsyncStore:
        return await AsyncStore.open(tmp_path / "mailward.db")

    writer = StoreWriter(open_store)
    daemon, _ = make_daemon()
    daemon.add_component(writer)
    await daemon.start()
    ev = TwinParser().parse(LINE)
    assert ev is not None
    await daemon.feed([ev] * 3)
    await daemon.shutdown()  # flushes what is pending
    reader = SqliteReader(tmp_path / "mailward.db")
    try:
        assert reader.count_events() == 3
        assert [d.target for d in reader.decisions()] == ["203.0.113.45"]
    finally:
        reader.close()
