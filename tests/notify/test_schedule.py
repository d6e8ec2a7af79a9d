from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.notify.test_digest import MemorySource, week_and_a_day

from mailward.clock import ManualClock
from mailward.notify.model import Message
from mailward.notify.schedule import DailyDigest, due_day
from mailward.notify.spool import Spool

SIX = datetime(2026, 3, 10, 6, 0, tzinfo=UTC).timestamp()


def test_due_day() -> None:
    assert due_day(SIX, UTC, 7, None) is None
    assert due_day(SIX + 3600, UTC, 7, None) == "2026-03-10"
    assert due_day(SIX + 3600, UTC, 7, "2026-03-10") is None
    assert due_day(SIX + 86400 + 3600, UTC, 7, "2026-03-10") == "2026-03-11"


async def test_sent_once_a_day_even_across_restarts(tmp_path: Path) -> None:
    sent: list[Message] = []
    clock = ManualClock(SIX)
    source = week_and_a_day()

    def make() -> DailyDigest:
        return DailyDigest(
            lambda: source,
            sent.append,
            Spool(tmp_path / "n.db"),
            clock=clock,
            tz=UTC,
            hour=7,
            chart=False,
            health=lambda: {"sources": "ok"},
        )

    digest = make()
    assert not await digest.run_once()  # 06:00: not yet
    clock.advance(3600)
    assert await digest.run_once()
    assert not await digest.run_once()
    assert "daily digest 2026-03-10" in sent[0].subject and "sources: ok" in sent[0].text
    clock.advance(600)
    assert not await make().run_once()  # restarted daemon: already sent today
    clock.advance(86400)
    assert await make().run_once()
    assert len(sent) == 2


async def test_a_broken_store_is_retried_not_fatal(tmp_path: Path) -> None:
    sent: list[Message] = []
    calls = 0

    def flaky() -> MemorySource:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database is locked")
        return MemorySource([], [], [])

    digest = DailyDigest(
        flaky,
        sent.append,
        Spool(tmp_path / "n.db"),
        clock=ManualClock(SIX + 3600),
        tz=UTC,
        hour=7,
        chart=False,
    )
    assert not await digest.run_once()
    assert await digest.run_once() and len(sent) == 1
