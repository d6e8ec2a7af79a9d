from __future__ import annotations

import asyncio
from pathlib import Path

from mailward.clock import SystemClock
from mailward.notify.channels.base import MemoryNotifier
from mailward.notify.dispatch import Dispatcher
from mailward.notify.metrics import Metrics
from mailward.notify.model import Message
from mailward.notify.spool import Spool


def msg(n: int) -> Message:
    return Message(subject=f"m{n}", text="t")


async def test_a_slow_and_a_failing_channel_never_block_the_others(tmp_path: Path) -> None:
    fast = MemoryNotifier("fast")
    slow = MemoryNotifier("slow", delay=30)
    broken = MemoryNotifier("broken", fail=True)
    metrics = Metrics()
    d = Dispatcher(
        [slow, broken, fast],
        Spool(tmp_path / "n.db"),
        clock=SystemClock(),
        timeout=0.5,
        retry_initial=60,
        metrics=metrics,
    )
    d.start()
    for i in range(3):
        d.submit(msg(i))  # returns at once: only a spool write
    await asyncio.wait_for(fast.arrived.wait(), 5)
    while len(fast.sent) < 3:
        await asyncio.sleep(0.01)
    assert [m.subject for m in fast.sent] == ["m0", "m1", "m2"]

    async def settled() -> None:  # slow's first attempt times out, broken's fails
        while not (d.status()["slow"]["failures"] and d.status()["broken"]["failures"]):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(settled(), 10)
    status = d.status()
    assert status["broken"]["failures"] >= 1 and status["broken"]["pending"] == 3
    assert status["slow"]["failures"] >= 1 and "timed out" in str(status["slow"]["last_error"])
    assert status["fast"] == {
        "pending": 0,
        "delivered": 3,
        "failures": 0,
        "dropped": 0,
        "last_error": None,
    }
    assert metrics.delivery_failures.labels(channel="broken")._value.get() >= 1
    assert metrics.deliveries.labels(channel="fast")._value.get() == 3
    await d.stop(drain=0)


async def test_undelivered_messages_survive_a_restart_and_are_retried(tmp_path: Path) -> None:
    down = MemoryNotifier("smtp", fail=True)
    d = Dispatcher(
        [down], Spool(tmp_path / "n.db"), clock=SystemClock(), retry_initial=0.05, retry_max=0.2
    )
    d.start()
    d.submit(msg(1))
    while down.attempts < 3:  # backoff keeps retrying
        await asyncio.sleep(0.02)
    await d.stop(drain=0)
    d.spool.close()
    # "Restart": a new process with the relay back up delivers what was queued, once.
    up = MemoryNotifier("smtp")
    d2 = Dispatcher(
        [up], Spool(tmp_path / "n.db"), clock=SystemClock(), retry_initial=0.05, retry_max=0.2
    )
    d2.start()
    await asyncio.wait_for(up.arrived.wait(), 5)
    await asyncio.sleep(0.3)
    assert [m.subject for m in up.sent] == ["m1"]
    await d2.stop()


async def test_bounded_lane_drops_oldest(tmp_path: Path) -> None:
    d = Dispatcher(
        [MemoryNotifier("x", fail=True)],
        Spool(tmp_path / "n.db"),
        clock=SystemClock(),
        max_pending=5,
    )
    for i in range(12):
        d.submit(msg(i))
    assert d.status()["x"]["pending"] == 5 and d.status()["x"]["dropped"] == 7
