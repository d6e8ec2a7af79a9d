from __future__ import annotations

import os
import sqlite3
import stat
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailward.config.model import Settings
from mailward.decisions.model import Action, Decision
from mailward.errors import InputError, MailwardError
from mailward.events import Connection, Service
from mailward.storage import schema
from mailward.storage.sqlite import DAY, Alert, SqliteReader, SqliteStore, open_store

from .samples import T0, every_kind, fail


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "db" / "mailward.db")
    yield s
    s.close()


def test_every_kind_roundtrips_exactly(store: SqliteStore) -> None:
    evs = every_kind()
    assert store.add_events(evs) == len(evs)
    back = list(store.events())
    assert back == evs
    assert [type(e) for e in back] == [type(e) for e in evs]
    # A separate read-only connection decodes the same.
    with store.reader() as r:
        assert list(r.events()) == evs


def test_sub_second_and_whole_timestamps_are_exact(store: SqliteStore) -> None:
    stamps = [T0, T0 + 0.000001, T0 + 0.5, 1_700_000_000.123456, 0.1 + 0.2]
    store.add_events(fail(t, "192.0.2.1") for t in stamps)
    assert [e.ts for e in store.events()] == sorted(stamps)


def test_equal_timestamps_keep_insertion_order_across_kinds(store: SqliteStore) -> None:
    evs = [
        Connection(ts=T0, service=Service.SMTP, ip=IPv4Address("192.0.2.1"), session="a"),
        fail(T0, "192.0.2.1"),
        Connection(ts=T0, service=Service.SMTP, ip=IPv4Address("192.0.2.2"), session="b"),
        fail(T0, "192.0.2.2"),
    ]
    store.add_events(evs)
    store.add_events(evs[:1])
    assert list(store.events()) == [*evs, evs[0]]


def test_strings_are_interned_once(store: SqliteStore) -> None:
    store.add_events(fail(T0 + i, "192.0.2.1", user="same@example.org") for i in range(500))
    n = store._conn.execute("SELECT COUNT(*) FROM strings WHERE value = 'same@example.org'")
    assert n.fetchone()[0] == 1
    # kinds + services + reason + source + username: a handful of strings for 500 events
    assert store.stats()["strings"] <= 6


def test_ip_columns_are_int_and_blob(store: SqliteStore) -> None:
    store.add_events([fail(T0, "192.0.2.1"), fail(T0 + 1, "2001:db8::1")])
    types = [r[0] for r in store._conn.execute("SELECT typeof(ip) FROM events ORDER BY ts")]
    assert types == ["integer", "blob"]


def test_large_batches_commit_in_chunks(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailward.storage.sqlite.BATCH", 7)
    evs = [fail(T0 + i, "192.0.2.1") for i in range(30)]
    assert store.add_events(iter(evs)) == 30
    assert list(store.events()) == evs
    assert store.add_events([]) == 0


def test_failed_batch_leaves_nothing_and_ids_stay_consistent(store: SqliteStore) -> None:
    store.add_events([fail(T0, "192.0.2.1", user="kept")])

    def boom() -> object:
        yield fail(T0 + 1, "192.0.2.2", user="rolled-back-user")
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        store.add_events(boom())
    assert store.count_events() == 1
    assert "rolled-back-user" not in store._str_ids
    # New strings after the rollback get fresh, valid ids.
    store.add_events([fail(T0 + 2, "192.0.2.3", user="after")])
    assert [e.username for e in store.events()] == ["kept", "after"]  # type: ignore[attr-defined]


def test_nested_transaction_failure_undoes_only_itself(store: SqliteStore) -> None:
    with store.transaction():
        store.add_events([fail(T0, "192.0.2.1", user="outer")])
        with pytest.raises(ValueError):
            with store.transaction():
                store.add_events([fail(T0 + 1, "192.0.2.2", user="inner")])
                raise ValueError
        store.add_events([fail(T0 + 2, "192.0.2.3", user="outer2")])
    assert [e.username for e in store.events()] == ["outer", "outer2"]  # type: ignore[attr-defined]


def test_import_positions_make_reimport_a_no_op(store: SqliteStore) -> None:
    lines = [(fail(T0 + i, "192.0.2.9"), (i + 1) * 100) for i in range(10)]
    assert store.import_position("fp1") == 0

    def run_import() -> int:
        start = store.import_position("fp1")
        todo = [(ev, off) for ev, off in lines if off > start]
        if not todo:
            return 0
        return store.import_batch("fp1", todo[-1][1], [ev for ev, _ in todo], path="/x.log")

    assert run_import() == 10
    assert run_import() == 0
    assert store.count_events() == 10
    assert store.import_position("fp1") == 1000
    store.set_import_position("fp1", 1200)
    assert store.import_position("fp1") == 1200
    with pytest.raises(ValueError):
        store.set_import_position("fp1", -1)


def test_import_batch_is_atomic(store: SqliteStore) -> None:
    def broken() -> object:
        yield fail(T0, "192.0.2.1")
        raise OSError("disk")

    with pytest.raises(OSError):
        store.import_batch("fp", 500, broken())
    assert store.import_position("fp") == 0
    assert store.count_events() == 0


def ban(ts: float, target: str, until: float | None, offence: int = 1) -> Decision:
    return Decision(
        ts=ts,
        target=target,
        action=Action.BAN,
        rule="short_ban",
        until=until,
        reason="5 failures in 10m",
        offence=offence,
        evidence={"failures": 5, "window": 600.0, "user": "bob"},
    )


def test_decisions_roundtrip_and_active(store: SqliteStore) -> None:
    d1 = ban(T0, "192.0.2.1", T0 + 3600)
    d2 = ban(T0 + 10, "198.51.100.0/24", None)
    d3 = Decision(T0 + 20, "user:bob", Action.PROTECT_USER, "distributed", T0 + 600)
    for d in (d1, d2, d3):
        store.add_decision(d)
    assert store.decisions() == [d1, d2, d3]
    assert store.decisions(T0 + 5, T0 + 15) == [d2]
    assert store.decisions(target="user:bob") == [d3]
    assert store.active_decisions(T0 + 30) == [d1, d2, d3]
    assert store.active_decisions(T0 + 3600) == [d2]  # until is exclusive
    assert store.active_decisions(T0 - 1) == []  # nothing decided yet
    # An UNBAN lifts earlier decisions on the target, not later ones.
    store.add_decision(Decision(T0 + 40, "192.0.2.1", Action.UNBAN, "operator"))
    assert store.active_decisions(T0 + 50) == [d2, d3]
    d4 = ban(T0 + 60, "192.0.2.1", T0 + 7200, offence=2)
    store.add_decision(d4)
    assert store.active_decisions(T0 + 70) == [d2, d3, d4]
    # Re-ban of an active target: only the latest is in force.
    d5 = ban(T0 + 80, "192.0.2.1", T0 + 9000, offence=3)
    store.add_decision(d5)
    assert store.active_decisions(T0 + 90) == [d2, d3, d5]


def test_offences_count_bans_in_history(store: SqliteStore) -> None:
    for i in range(4):
        store.add_decision(ban(T0 + i * 30 * DAY, "192.0.2.1", T0 + i * 30 * DAY + 3600))
    store.add_decision(Decision(T0, "192.0.2.1", Action.TARPIT, "slow"))
    assert store.offences("192.0.2.1", T0) == 4
    assert store.offences("192.0.2.1", T0 + 31 * DAY) == 2
    assert store.offences("192.0.2.2", 0) == 0


def test_alerts_roundtrip(store: SqliteStore) -> None:
    a = Alert(T0, "spike", "warning", "206 attempts in 39 min", key="spike:1", data={"n": 206})
    store.add_alert(a)
    assert store.alerts() == [a]
    assert store.alerts(since=T0 + 1) == []


def test_prune_by_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db", retention_days=30)
    now = T0 + 100 * DAY
    store.add_events([fail(T0, "192.0.2.1", user="old-user"), fail(now - DAY, "192.0.2.2")])
    store.add_decision(ban(T0, "192.0.2.1", T0 + 3600))
    store.add_decision(ban(T0, "192.0.2.9", None))  # permanent: kept
    store.add_decision(Decision(T0, "192.0.2.1", Action.UNBAN, "op"))
    store.add_decision(ban(now - DAY, "192.0.2.2", now + DAY))
    store.add_alert(Alert(T0, "spike", "info", "old"))
    res = store.prune(now, compact=True)
    assert (res.events, res.decisions, res.alerts) == (1, 2, 1)
    assert res.strings >= 1  # "old-user" is no longer referenced
    assert [e.ip for e in store.events()] == [IPv4Address("192.0.2.2")]
    assert [d.target for d in store.decisions()] == ["192.0.2.9", "192.0.2.2"]
    # Interning still works after strings were collected.
    store.add_events([fail(now, "192.0.2.3", user="old-user")])
    assert [e.username for e in store.events(since=now)] == ["old-user"]  # type: ignore[attr-defined]
    store.close()


def test_default_retention_is_over_a_year(tmp_path: Path) -> None:
    s = open_store(Settings.model_validate({"storage": {"path": str(tmp_path / "s.db")}}))
    assert s.retention_days == 400
    s.add_events([fail(T0, "192.0.2.1")])
    assert s.prune(T0 + 399 * DAY).events == 0
    assert s.prune(T0 + 401 * DAY).events == 1
    s.close()


def test_wal_mode_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "mailward.db"
    s = SqliteStore(path)
    s.add_events([fail(T0, "192.0.2.1")])
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~umask
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750 & ~umask
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o640 & ~umask
    s.close()


def test_reopen_keeps_data_and_counter(tmp_path: Path) -> None:
    p = tmp_path / "re.db"
    s = SqliteStore(p)
    s.add_events([fail(T0, "192.0.2.1")])
    s.close()
    s = SqliteStore(p)
    s.add_events([fail(T0, "192.0.2.2")])
    assert [str(e.ip) for e in s.events()] == ["192.0.2.1", "192.0.2.2"]
    s.close()


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database at all, just some text " * 100)
    with pytest.raises(InputError, match=str(bad)):
        SqliteStore(bad)
    with pytest.raises(InputError, match=str(bad)):
        SqliteReader(bad)


def test_directory_missing_file_and_newer_schema_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        SqliteStore(tmp_path)
    with pytest.raises(InputError, match="no mailward database"):
        SqliteReader(tmp_path / "absent.db")
    p = tmp_path / "new.db"
    c = sqlite3.connect(p)
    c.execute(f"PRAGMA user_version = {schema.LATEST + 5}")
    c.close()
    with pytest.raises(MailwardError, match="newer"):
        SqliteStore(p)


def test_uncreatable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        SqliteStore(blocker / "sub" / "x.db")


def test_evidence_that_is_not_json_is_kept_as_text(store: SqliteStore) -> None:
    d = Decision(
        T0, "192.0.2.1", Action.BAN, "r", T0 + 60, evidence={"ip": IPv4Address("192.0.2.1")}
    )  # type: ignore[dict-item]
    store.add_decision(d)
    assert store.decisions()[0].evidence == {"ip": "192.0.2.1"}


def test_active_is_extend_only_and_prefix_unban_lifts_inner_bans(store: SqliteStore) -> None:
    long = ban(T0, "192.0.2.1", T0 + 7200)
    short = ban(T0 + 10, "192.0.2.1", T0 + 600)  # a shorter ban never shortens a longer one
    inner6 = ban(T0, "2001:db8::1", None)
    other = ban(T0, "198.51.100.7", T0 + 7200)
    for d in (long, short, inner6, other):
        store.add_decision(d)
    assert store.active_decisions(T0 + 20) == [long, other, inner6]  # by time, then target
    store.add_decision(Decision(T0 + 30, "192.0.2.0/24", Action.UNBAN, "operator"))
    store.add_decision(Decision(T0 + 30, "2001:db8::/32", Action.UNBAN, "operator"))
    assert store.active_decisions(T0 + 40) == [other]
    # Before the unban, everything was still in force.
    assert store.active_decisions(T0 + 29) == [long, other, inner6]


def test_active_bans_agree_with_the_daemon_ledger(store: SqliteStore) -> None:
    ledger = pytest.importorskip("mailward.daemon.ledger")
    rnd = __import__("random").Random(3)
    targets = ["192.0.2.1", "192.0.2.2", "192.0.2.0/24", "2001:db8::5", "2001:db8::/48"]
    history = []
    for i in range(200):
        t = rnd.choice(targets)
        ts = T0 + i * 60
        if rnd.random() < 0.2:
            history.append(Decision(ts, t, Action.UNBAN, "op"))
        else:
            until = None if rnd.random() < 0.1 else ts + rnd.randint(60, 4 * 3600)
            history.append(ban(ts, t, until))
    for d in history:
        store.add_decision(d)
    for now in (T0 + 3000, T0 + 6000, T0 + 12000, T0 + 20000):
        mine = [d for d in store.active_decisions(now) if d.action is Action.BAN]
        theirs = ledger.active_from([d for d in history if d.ts <= now], now)
        assert sorted(mine, key=lambda d: d.target) == sorted(theirs, key=lambda d: d.target)
