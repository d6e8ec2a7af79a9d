from __future__ import annotations

from pathlib import Path

from mailward.notify.gate import Gate
from mailward.notify.model import Alert, Severity
from mailward.notify.spool import Spool


def alert(key: str, sev: Severity = Severity.HIGH, ts: float = 0) -> Alert:
    return Alert(ts=ts, kind="k", key=key, severity=sev, title=key)


def test_grouping_cooldown_and_restart(tmp_path: Path) -> None:
    gate = Gate(Spool(tmp_path / "n.db"), cooldown=3600, group_seconds=20)
    assert gate.offer(alert("a"), 0) and gate.offer(alert("b"), 5)
    assert gate.flush(10) is None  # still grouping
    batch = gate.flush(20)
    assert batch is not None and [a.key for a in batch.alerts] == ["a", "b"]
    # Within the cooldown the same key is held back and counted...
    assert not gate.offer(alert("a"), 100) and not gate.offer(alert("a"), 200)
    # ...also after a restart (the ledger is on disk): no flood.
    gate = Gate(Spool(tmp_path / "n.db"), cooldown=3600, group_seconds=20)
    assert not gate.offer(alert("a"), 300)
    assert gate.offer(alert("a"), 3700)
    batch = gate.flush(3720)
    assert batch is not None and batch.held == {"a": (3, 100)}


def test_critical_is_never_held_for_grouping_and_min_severity_filters(tmp_path: Path) -> None:
    gate = Gate(Spool(tmp_path / "n.db"), cooldown=0, group_seconds=60, min_severity=Severity.HIGH)
    assert not gate.offer(alert("info", Severity.WARNING), 0)
    assert gate.below_severity == 1
    gate.offer(alert("x", Severity.CRITICAL), 0)
    batch = gate.flush(0)
    assert batch is not None and [a.key for a in batch.alerts] == ["x"]
    assert gate.flush(1000) is None


def test_same_key_twice_in_one_batch_keeps_newest(tmp_path: Path) -> None:
    gate = Gate(Spool(tmp_path / "n.db"), cooldown=0, group_seconds=60)
    gate.offer(alert("a", ts=1), 1)
    gate.offer(alert("a", ts=2), 2)
    batch = gate.flush(0, force=True)
    assert batch is not None and [a.ts for a in batch.alerts] == [2]
