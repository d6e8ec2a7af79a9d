"""The twin answers like the real store: same data in, every query compared."""

from __future__ import annotations

import random
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Connection, Event, FailReason, Origin, Service
from mailward.storage.memory import MemoryStore
from mailward.storage.reader import Alert
from mailward.storage.sqlite import DAY, SqliteStore

from .samples import T0, every_kind


def _events(n: int) -> list[Event]:
    rnd = random.Random(7)
    v4 = [IPv4Address(f"198.51.{rnd.randint(0, 3)}.{rnd.randint(1, 254)}") for _ in range(40)]
    v6 = [IPv6Address(f"2001:db8:{rnd.randint(0, 2)}::{rnd.randint(1, 999)}") for _ in range(10)]
    out: list[Event] = []
    for i in range(n):
        ts = T0 + rnd.randint(0, 3 * 86400) + rnd.choice((0.0, 0.25))
        ip = rnd.choice(v4 + v6)
        if rnd.random() < 0.7:
            out.append(
                AuthFailure(
                    ts=ts,
                    service=rnd.choice(list(Service)),
                    ip=ip,
                    username=rnd.choice(["bob", "alice", "info", None]),
                    reason=rnd.choice(list(FailReason)),
                    attempts=rnd.choice((1, 1, 3)),
                    origin=Origin("mail.log", i + 1),
                )
            )
        else:
            out.append(Connection(ts=ts, service=Service.SMTP, ip=ip if i % 9 else None))
    return out + every_kind()


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[SqliteStore, MemoryStore]]:
    real = SqliteStore(tmp_path / "m.db", retention_days=2)
    twin = MemoryStore(retention_days=2)
    evs = _events(600)
    for store in (real, twin):
        store.add_events(evs[:300])
        store.import_batch("fp", 300, evs[300:])
        for i in range(6):
            store.add_decision(
                Decision(
                    T0 + i * 3600, f"198.51.0.{i % 3}", Action.BAN, "short", T0 + i * 3600 + 7200
                )
            )
        store.add_decision(Decision(T0 + 1800, "198.51.0.1", Action.UNBAN, "op"))
        store.add_decision(Decision(T0, "user:bob", Action.PROTECT_USER, "dist", None))
        store.add_alert(Alert(T0 + 5, "spike", "warning", "m", data={"n": 1}))
    yield real, twin
    real.close()


def test_every_query_matches(both: tuple[SqliteStore, MemoryStore]) -> None:
    real, twin = both
    windows = [(None, None), (T0 + 3600, T0 + 86400), (T0 + 0.25, None)]
    kind_sets = [None, ["auth_failure"], ["connection", "auth_success"]]
    for since, until in windows:
        for kinds in kind_sets:
            args = (since, until, kinds)
            assert list(real.events(*args)) == list(twin.events(*args))
            assert real.count_events(*args) == twin.count_events(*args)
            assert real.counts_per_hour(*args) == twin.counts_per_hour(*args)
            assert real.top_ips(*args, limit=15) == twin.top_ips(*args, limit=15)
            assert real.top_usernames(*args) == twin.top_usernames(*args)
            assert real.top_prefixes(*args) == twin.top_prefixes(*args)
            assert real.top_prefixes(*args, v4=16, v6=32) == twin.top_prefixes(*args, v4=16, v6=32)
        assert real.decisions(since, until) == twin.decisions(since, until)
        assert real.alerts(since, until) == twin.alerts(since, until)
    assert real.span() == twin.span()
    for now in (T0 - 1, T0 + 100, T0 + 2000, T0 + 5 * 3600, T0 + DAY):
        assert real.active_decisions(now) == twin.active_decisions(now)
    for target in ("198.51.0.0", "198.51.0.1", "user:bob", "x"):
        assert real.offences(target, T0 + 3600) == twin.offences(target, T0 + 3600)
    assert real.import_position("fp") == twin.import_position("fp") == 300


def test_prune_matches(both: tuple[SqliteStore, MemoryStore]) -> None:
    real, twin = both
    now = T0 + 3.5 * DAY
    r, t = real.prune(now), twin.prune(now)
    assert (r.cutoff, r.events, r.decisions, r.alerts) == (
        t.cutoff,
        t.events,
        t.decisions,
        t.alerts,
    )
    assert list(real.events()) == list(twin.events())
    assert real.decisions() == twin.decisions()


def test_memory_import_batch_is_atomic() -> None:
    store = MemoryStore()

    def broken() -> Iterator[Event]:
        yield every_kind()[0]
        raise OSError("disk")

    with pytest.raises(OSError):
        store.import_batch("fp", 10, broken())
    assert store.import_position("fp") == 0
    assert store.count_events() == 0
