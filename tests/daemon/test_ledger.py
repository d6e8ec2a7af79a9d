from pathlib import Path

import pytest

from mailward.daemon.ledger import DAY, Ledger, MemoryLedger, active_from
from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Origin, Service, normalise_ip
from mailward.storage.ledger import StoreLedger


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


def test_active_from_folds_bans_unbans_and_expiry() -> None:
    decisions = [
        d(1, "203.0.113.1"),
        d(2, "203.0.113.2", until=50.0),
        d(3, "198.51.100.0/24", until=None),
        d(4, "203.0.113.1", until=2000.0),
        d(5, "198.51.100.0/24", action=Action.UNBAN, until=None),
        d(6, "user:bob", action=Action.PROTECT_USER),
        d(7, "10.0.0.1"),
        d(8, "10.0.0.0/8", action=Action.UNBAN, until=None),
    ]
    active = active_from(decisions, now=100.0)
    assert [(a.target, a.until) for a in active] == [("203.0.113.1", 2000.0)]


def open_ledger(kind: str, tmp_path: Path, retention_days: int = 400) -> Ledger:
    if kind == "memory":
        return MemoryLedger(retention_days=retention_days)
    return StoreLedger(tmp_path / "mailward.db", retention_days=retention_days)


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_commit_and_read_back(kind: str, tmp_path: Path) -> None:
    ledger = open_ledger(kind, tmp_path)
    ledger.commit([ev(1), ev(2)], [d(1, "203.0.113.1")], {"file:a": "[1]"})
    ledger.commit([], [d(2, "203.0.113.1", action=Action.UNBAN, until=None)], {"file:a": "[2]"})
    assert ledger.load_positions() == {"file:a": "[2]"}
    assert ledger.event_count() == 2
    assert ledger.active_decisions(10.0) == []
    assert [x.action for x in ledger.recent_decisions()] == [Action.UNBAN, Action.BAN]
    assert ledger.recent_decisions()[1].evidence == {"n": 3}
    assert ledger.offences("203.0.113.1", 0.0) == 1 and ledger.offences("203.0.113.1", 1.5) == 0
    ledger.close()


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_prune_keeps_what_is_young_permanent_or_in_force(kind: str, tmp_path: Path) -> None:
    """The twin forgets exactly what the shared store's retention forgets."""
    ledger = open_ledger(kind, tmp_path, retention_days=1)
    now = 10 * DAY
    old = now - 2 * DAY
    ledger.commit(
        [ev(int(old)), ev(int(now - 3600))],
        [
            d(old, "203.0.113.1", until=old + 60),  # old and over: pruned
            d(old, "203.0.113.2", until=None),  # permanent: kept
            d(old, "203.0.113.3", until=now + 60),  # still in force: kept
            d(old, "203.0.113.4", action=Action.UNBAN, until=None),  # old unban: pruned
            d(now - 60, "203.0.113.5", until=now - 1),  # young: kept
        ],
        {},
    )
    ledger.prune(now)
    assert ledger.event_count() == 1
    assert sorted(x.target for x in ledger.recent_decisions()) == [
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.5",
    ]
    ledger.close()
