"""Read queries, through the writer and through a separate read-only connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest

from mailward.errors import InputError
from mailward.events import Connection, Service
from mailward.storage.reader import SqliteReader
from mailward.storage.sqlite import SqliteStore

from .samples import T0, every_kind, fail


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "mailward.db")
    yield s
    s.close()


def test_window_and_kind_filters(store: SqliteStore) -> None:
    evs = every_kind()
    store.add_events(evs)
    got = list(store.events(T0 + 1, T0 + 4))
    assert got == [e for e in evs if T0 + 1 <= e.ts < T0 + 4]
    assert list(store.events(kinds=["auth_failure"])) == [
        e for e in evs if e.kind == "auth_failure"
    ]
    assert list(store.events(kinds=["no_such_kind"])) == []
    assert store.count_events(kinds=["auth_failure", "auth_success"]) == 4
    assert store.span() == (min(e.ts for e in evs), max(e.ts for e in evs))


def test_empty_store_queries(store: SqliteStore) -> None:
    assert list(store.events()) == []
    assert store.span() is None
    assert store.top_ips() == []
    assert store.counts_per_hour() == []
    assert store.active_decisions(T0) == []
    assert store.offences("192.0.2.1", 0) == 0


def test_counts_per_hour_and_tops(store: SqliteStore) -> None:
    h0 = 1_763_719_200.0  # an hour boundary
    evs = [fail(h0 + 10 * i, "198.51.100.7") for i in range(5)]
    evs += [fail(h0 + 20, "198.51.100.8", user="alice", attempts=4)]
    evs += [fail(h0 + 3600 + i, "2001:db8:0:1::" + str(i + 1), user="alice") for i in range(3)]
    evs += [Connection(ts=h0 + 5, service=Service.SMTP, ip=IPv4Address("203.0.113.1"))]
    store.add_events(evs)
    hours = store.counts_per_hour(kinds=["auth_failure"])
    assert [(h.hour, h.events, h.attempts, h.distinct_ips) for h in hours] == [
        (h0, 6, 9, 2),
        (h0 + 3600, 3, 3, 3),
    ]
    assert {h.kind for h in store.counts_per_hour()} == {"auth_failure", "connection"}
    assert store.top_ips(kinds=["auth_failure"], limit=2) == [
        (IPv4Address("198.51.100.7"), 5),
        (IPv4Address("198.51.100.8"), 4),
    ]
    assert store.top_usernames(kinds=["auth_failure"]) == [("alice", 7), ("bob", 5)]
    assert store.top_usernames(since=h0 + 3600) == [("alice", 3)]
    assert store.top_prefixes(kinds=["auth_failure"]) == [
        (IPv4Network("198.51.100.0/24"), 9, 2),
        (IPv6Network("2001:db8:0:1::/64"), 3, 3),
    ]
    assert store.top_prefixes(kinds=["auth_failure"], v4=16, v6=48)[0][0] == IPv4Network(
        "198.51.0.0/16"
    )
    with pytest.raises(ValueError):
        store.top_prefixes(v6=60)


def test_reader_sees_commits_while_writer_is_open(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "r.db")
    r = SqliteReader(tmp_path / "r.db")
    assert r.count_events() == 0
    s.add_events([fail(T0, "192.0.2.1")])
    assert r.count_events() == 1
    with pytest.raises(sqlite3.OperationalError):  # read-only
        r._conn.execute("DELETE FROM events")
    r.close()
    s.close()


def test_read_only_connection_answers_like_the_writer(store: SqliteStore) -> None:
    evs = every_kind() + [fail(T0 + 3600 * i, f"198.51.100.{i}") for i in range(5)]
    store.add_events(evs)
    with SqliteReader(store.path) as r:
        assert list(r.events()) == list(store.events())
        assert r.counts_per_hour() == store.counts_per_hour()
        assert r.top_ips() == store.top_ips()
        assert r.top_prefixes() == store.top_prefixes()
        assert r.top_usernames() == store.top_usernames()
        assert r.stats()["events"] == len(evs)


def test_reader_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    p = tmp_path / "old.db"
    sqlite3.connect(p).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(InputError, match="schema version 0"):
        SqliteReader(p)
