from __future__ import annotations

import asyncio
import threading
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailward.decisions.model import Action, Decision
from mailward.errors import BackendUnavailable, InputError
from mailward.events import AuthFailure, Service
from mailward.storage.aio import AsyncStore
from mailward.storage.sqlite import Alert, SqliteStore

from .samples import T0, every_kind


def fail(ts: float, user: str = "bob") -> AuthFailure:
    return AuthFailure(ts=ts, service=Service.IMAP, ip=IPv4Address("192.0.2.1"), username=user)


async def test_write_and_read_roundtrip(tmp_path: Path) -> None:
    async with await AsyncStore.open(tmp_path / "a.db") as store:
        evs = every_kind()
        assert await store.add_events(evs) == len(evs)
        assert await store.events() == evs
        assert await store.events(kinds=["connection"]) == [
            e for e in evs if e.kind == "connection"
        ]
        d = Decision(T0, "192.0.2.1", Action.BAN, "rate", T0 + 60)
        await store.add_decision(d)
        assert await store.active_decisions(T0 + 1) == [d]
        assert await store.decisions(target="192.0.2.1") == [d]
        assert await store.offences("192.0.2.1", 0) == 1
        await store.add_alert(Alert(T0, "spike", "warning", "x"))
        assert len(await store.read(lambda r: r.alerts())) == 1
        assert await store.import_batch("fp", 99, [fail(T0 + 9)]) == 1
        assert await store.import_position("fp") == 99
        await store.set_import_position("fp", 120)
        assert await store.import_position("fp") == 120
        assert (await store.prune(T0 + 1000 * 86400)).events == len(evs) + 1


async def test_writes_run_on_one_thread_and_batch_into_commits(tmp_path: Path) -> None:
    threads: set[str] = set()

    def job(i: int):  # type: ignore[no-untyped-def]
        def run(s: SqliteStore) -> int:
            threads.add(threading.current_thread().name)
            s.add_events([fail(T0 + i)])
            return i

        return run

    async with await AsyncStore.open(tmp_path / "b.db") as store:
        results = await asyncio.gather(*(store.write(job(i)) for i in range(300)))
        assert results == list(range(300))
        assert threads == {"mailward-db-writer"}
        assert store.jobs_done == 300
        assert store.commits < 300  # queued jobs shared transactions
        assert await store.read(lambda r: r.count_events()) == 300


async def test_a_failing_job_fails_alone(tmp_path: Path) -> None:
    def bad(s: SqliteStore) -> None:
        s.add_events([fail(T0, user="ghost")])
        raise ValueError("job broke")

    async with await AsyncStore.open(tmp_path / "c.db") as store:
        ok1 = store.write(lambda s: s.add_events([fail(T0 + 1)]))
        broken = store.write(bad)
        ok2 = store.write(lambda s: s.add_events([fail(T0 + 2)]))
        r = await asyncio.gather(ok1, broken, ok2, return_exceptions=True)
        assert r[0] == 1 and r[2] == 1
        assert isinstance(r[1], ValueError)
        names = await store.read(lambda rd: [e.username for e in rd.events()])  # type: ignore[attr-defined]
        assert names == ["bob", "bob"]


async def test_event_loop_stays_responsive_during_a_big_write(tmp_path: Path) -> None:
    async with await AsyncStore.open(tmp_path / "d.db") as store:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(ticker(), name="ticker")
            await store.add_events(fail(T0 + i) for i in range(50_000))
            t.cancel()
        assert ticks > 5


async def test_open_error_is_raised_from_open(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    with pytest.raises(InputError, match="bad.db"):
        await AsyncStore.open(bad)


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "e.db")
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.write(lambda s: None)
    with pytest.raises(RuntimeError):
        await store.read(lambda r: None)


async def test_dead_writer_is_reported_not_awaited_forever(tmp_path: Path) -> None:
    store = await AsyncStore.open(tmp_path / "f.db")
    store._jobs.put(None)  # the writer thread stops as if it had died
    assert store._thread is not None
    await asyncio.to_thread(store._thread.join)
    with pytest.raises(BackendUnavailable, match="writer thread"):
        await store.write(lambda s: None)
    await store.close()
