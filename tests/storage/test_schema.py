from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailward.storage import schema
from mailward.storage.schema import LATEST, MIGRATIONS, Migration, SchemaError, migrate, version


def _conn(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    c = _conn(tmp_path / "a.db")
    assert migrate(c) == [m.version for m in MIGRATIONS]
    assert version(c) == LATEST
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"strings", "events", "meta", "imports", "decisions", "alerts"} <= tables
    assert migrate(c) == []  # idempotent


def test_versions_are_dense_and_ordered() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_older_schema_migrates_forward_keeping_data(tmp_path: Path) -> None:
    c = _conn(tmp_path / "old.db")
    migrate(c, MIGRATIONS[:1])
    assert version(c) == 1
    c.execute("INSERT INTO imports (identity, offset, updated) VALUES ('f', 10, 0)")
    assert migrate(c) == list(range(2, LATEST + 1))
    assert c.execute("SELECT offset FROM imports").fetchone() == (10,)
    c.execute("SELECT COUNT(*) FROM decisions").fetchone()


def test_python_step_and_failure_rolls_back(tmp_path: Path) -> None:
    c = _conn(tmp_path / "p.db")
    calls: list[int] = []

    def backfill(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("INSERT INTO t VALUES (1)")

    ok = (Migration(1, "t", "CREATE TABLE t (x INTEGER);", backfill),)
    assert migrate(c, ok) == [1]
    assert calls == [1]
    bad = (*ok, Migration(2, "broken", "CREATE TABLE u (y); INSERT INTO nope VALUES (1);"))
    with pytest.raises(SchemaError, match="migration 2"):
        migrate(c, bad)
    assert version(c) == 1
    # The failed migration left nothing behind.
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is None


def test_newer_database_is_refused(tmp_path: Path) -> None:
    c = _conn(tmp_path / "n.db")
    c.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(SchemaError, match="newer"):
        migrate(c, name="n.db")


def test_misnumbered_migrations_are_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        migrate(_conn(tmp_path / "x.db"), (Migration(2, "skip"),))


def test_statement_splitting_ignores_comments() -> None:
    stmts = schema._statements("-- a; b\nCREATE TABLE a (x); -- tail\nCREATE TABLE b (y);\n")
    assert len(stmts) == 2
