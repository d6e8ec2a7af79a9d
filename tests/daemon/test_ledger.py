from pathlib import Path

import pytest

from mailward.daemon.ledger import MemoryLedger, SqliteLedger, active_from
from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Origin, Service, normalise_ip


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


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_commit_and_read_back(kind: str, tmp_path: Path) -> None:
    ledger = MemoryLedger() if kind == "memory" else SqliteLedger(tmp_path / "l.db")
    ledger.commit([ev(1), ev(2)], [d(1, "203.0.113.1")], {"file:a": "[1]"})
    ledger.commit([], [d(2, "203.0.113.1", action=Action.UNBAN, until=None)], {"file:a": "[2]"})
    assert ledger.load_positions() == {"file:a": "[2]"}
    assert ledger.event_count() == 2
    assert ledger.active_decisions(10.0) == []
    assert [x.action for x in ledger.recent_decisions()] == [Action.UNBAN, Action.BAN]
    assert ledger.recent_decisions()[1].evidence == {"n": 3}
    assert ledger.offences("203.0.113.1", 0.0) == 1 and ledger.offences("203.0.113.1", 1.5) == 0
    ledger.close()


def test_sqlite_persists_and_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    ledger.commit([ev(1)], [d(1, "203.0.113.9")], {"s": "p1"})
    with pytest.raises(AttributeError):
        ledger.commit([ev(2), "not an event"], [], {"s": "p2"})  # type: ignore[list-item]
    ledger.close()
    again = SqliteLedger(path)
    assert again.load_positions() == {"s": "p1"}  # the failed commit left nothing behind
    assert again.event_count() == 1
    assert [x.target for x in again.active_decisions(5.0)] == ["203.0.113.9"]
    assert again.events_json()[0]["kind"] == "auth_failure"
    again.close()
