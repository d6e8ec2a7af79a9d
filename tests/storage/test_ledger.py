"""StoreLedger honours the daemon's Ledger contract (same checks as tests/daemon/test_ledger.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Event, Origin, Service, normalise_ip
from mailward.storage.ledger import StoreLedger
from mailward.storage.sqlite import SqliteStore


def d(
    ts: float, target: str, action: Action = Action.BAN, until: float | None = 1000.0
) -> Decision:
    return Decision(ts=ts, target=target, action=action, rule="r", until=until, evidence={"n": 3})


def ev(n: int) -> AuthFailure:
    return AuthFailure(
        ts=float(n),
        service=Service.IMAP,
        ip=normalise_ip("203.0.113.1"),
        origin=Origin("mail.log", n),
        username="bob",
    )


def test_commit_and_read_back(tmp_path: Path) -> None:
    ledger = StoreLedger(tmp_path / "l.db")
    ledger.commit([ev(1), ev(2)], [d(1, "203.0.113.1")], {"file:a": "[1]"})
    ledger.commit([], [d(2, "203.0.113.1", action=Action.UNBAN, until=None)], {"file:a": "[2]"})
    assert ledger.load_positions() == {"file:a": "[2]"}
    assert ledger.event_count() == 2
    assert ledger.active_decisions(10.0) == []
    assert [x.action for x in ledger.recent_decisions()] == [Action.UNBAN, Action.BAN]
    assert ledger.recent_decisions()[1].evidence == {"n": 3}
    assert ledger.offences("203.0.113.1", 0.0) == 1
    ledger.close()


def test_only_bans_are_restored(tmp_path: Path) -> None:
    ledger = StoreLedger(tmp_path / "l.db")
    ledger.commit([], [d(1, "203.0.113.1"), d(2, "user:bob", Action.PROTECT_USER)], {})
    assert [x.target for x in ledger.active_decisions(5.0)] == ["203.0.113.1"]
    ledger.close()


def test_persists_and_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = StoreLedger(path)
    ledger.commit([ev(1)], [d(1, "203.0.113.9")], {"s": "p1"})
    with pytest.raises(AttributeError):
        ledger.commit([ev(2), "not an event"], [], {"s": "p2"})  # type: ignore[list-item]
    ledger.close()
    again = StoreLedger(path)
    assert again.load_positions() == {"s": "p1"}  # the failed commit left nothing behind
    assert again.event_count() == 1
    assert [x.target for x in again.active_decisions(5.0)] == ["203.0.113.9"]
    again.close()
    # The same file is the history store: reports read what the daemon wrote.
    store = SqliteStore(path)
    assert [e.ts for e in store.events()] == [1.0]
    store.close()


async def test_usable_from_worker_threads(tmp_path: Path) -> None:
    ledger = StoreLedger(tmp_path / "t.db")
    batches: list[list[Event]] = [[ev(i * 10 + j) for j in range(10)] for i in range(20)]
    await asyncio.gather(
        *(asyncio.to_thread(ledger.commit, b, [], {"src": str(i)}) for i, b in enumerate(batches))
    )
    assert await asyncio.to_thread(ledger.event_count) == 200
    assert (await asyncio.to_thread(ledger.load_positions))["src"] in {str(i) for i in range(20)}
    await asyncio.to_thread(ledger.close)
