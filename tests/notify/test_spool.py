from __future__ import annotations

from pathlib import Path

from mailward.notify.model import Message
from mailward.notify.spool import Spool


def test_outbox_survives_reopen_and_backs_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "notify.db")
    a = spool.add("smtp", Message(subject="a", text="1"), 100)
    spool.add("sendmail", Message(subject="b", text="2"), 100)
    spool.failed(a, 200, "connection refused")
    spool.close()
    spool = Spool(tmp_path / "notify.db")
    assert spool.due("smtp", 150) == []
    [item] = spool.due("smtp", 200)
    assert (item.message.subject, item.attempts) == ("a", 1)
    assert spool.next_due("smtp") == 200
    spool.done(a)
    assert spool.pending("smtp") == 0 and spool.pending() == 1


def test_trim_keeps_newest_and_expire_drops_old(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "notify.db")
    for i in range(10):
        spool.add("smtp", Message(subject=str(i), text=""), 100 + i)
    assert spool.trim("smtp", 3) == 7
    assert [p.message.subject for p in spool.due("smtp", 1000)] == ["7", "8", "9"]
    assert spool.expire(109) == 2
    assert spool.pending("smtp") == 1


def test_ledger_counts_held_repeats(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "notify.db")
    assert spool.last_sent("k") is None
    spool.mark_sent("k", 10)
    spool.mark_held("k", 20)
    spool.mark_held("k", 30)
    assert spool.last_sent("k") == (10, 2, 20)
    spool.mark_sent("k", 40)
    assert spool.last_sent("k") == (40, 0, None)
    spool.forget_before(50)
    assert spool.last_sent("k") is None
