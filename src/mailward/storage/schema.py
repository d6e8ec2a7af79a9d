"""The SQLite schema as an ordered list of migrations, applied on open.

The schema version is ``PRAGMA user_version``: migration N moves a database from version N-1 to N,
each in its own transaction. To change the schema, append a ``Migration`` (never edit a released
one); ``docs/storage.md`` explains how.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailward.errors import MailwardError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str = ""
    # For changes SQL alone cannot express (data rewrites); runs after ``sql``, same transaction.
    python: Callable[[sqlite3.Connection], None] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "interned strings, events, import positions",
        """
        -- Every repeated string (kinds, services, usernames, sources, rules, ...) is stored once.
        -- AUTOINCREMENT: ids are never reused after a prune, so a cached id->string map in
        -- another connection can be stale but never wrong.
        CREATE TABLE strings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            value TEXT NOT NULL UNIQUE
        );
        -- Clustered by time (WITHOUT ROWID, key (ts, id)): a window query reads contiguous pages
        -- and no separate time index is stored. ts is REAL (POSIX seconds): SQLite writes
        -- whole-second values as integers on disk and keeps sub-second stamps exact. id is a
        -- counter kept in meta; it only orders events of equal ts in insertion order.
        -- Interned columns hold strings.id, 0 for none. ip: IPv4 INTEGER, IPv6 16-byte BLOB.
        -- Columns a kind does not use keep their DEFAULT (no payload bytes on disk).
        CREATE TABLE events (
            ts REAL NOT NULL,
            id INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            service INTEGER NOT NULL DEFAULT 0,
            ip BLOB,
            user INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 1,
            session TEXT DEFAULT '',
            t1 INTEGER NOT NULL DEFAULT 0,
            t2 INTEGER NOT NULL DEFAULT 0,
            t3 INTEGER NOT NULL DEFAULT 0,
            n1 INTEGER DEFAULT 0,
            n2 INTEGER DEFAULT 0,
            n3 INTEGER DEFAULT 0,
            n4 INTEGER DEFAULT 0,
            src INTEGER NOT NULL DEFAULT 0,
            line INTEGER,
            cursor TEXT,
            extra TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (ts, id)
        ) WITHOUT ROWID;
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value ANY
        ) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('next_event_id', 1);
        CREATE TABLE imports (
            identity TEXT PRIMARY KEY,
            offset INTEGER NOT NULL,
            updated REAL NOT NULL,
            path TEXT
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        2,
        "decisions (offender history)",
        """
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            target TEXT NOT NULL,
            action INTEGER NOT NULL,
            rule INTEGER NOT NULL,
            until REAL,
            reason TEXT NOT NULL DEFAULT '',
            offence INTEGER NOT NULL DEFAULT 1,
            evidence TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX decisions_target_ts ON decisions (target, ts);
        CREATE INDEX decisions_ts ON decisions (ts);
        CREATE INDEX decisions_until ON decisions (until);
        """,
    ),
    Migration(
        3,
        "alerts log (what was told to a human, for the digest)",
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            kind INTEGER NOT NULL,      -- strings.id
            severity INTEGER NOT NULL,  -- strings.id
            key TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX alerts_ts ON alerts (ts);
        """,
    ),
    Migration(
        4,
        "live source positions (opaque strings the daemon's followers understand)",
        """
        CREATE TABLE source_positions (
            source TEXT PRIMARY KEY,
            position TEXT NOT NULL,
            updated REAL NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
)

LATEST = MIGRATIONS[-1].version


class SchemaError(MailwardError):
    """The database was written by a newer mailward, or a migration failed."""


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, name: str = ""
) -> list[int]:
    """Bring ``conn`` (autocommit mode) up to the last migration; return the versions applied."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise ValueError(f"migration {m.description!r} has version {m.version}, expected {i}")
    current = version(conn)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaError(
            f"{name or 'database'}: schema version {current} is newer than this mailward "
            f"understands ({latest}); upgrade mailward or restore an older database"
        )
    applied: list[int] = []
    for m in migrations[current:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(m.sql):
                conn.execute(stmt)
            if m.python is not None:
                m.python(conn)
            conn.execute(f"PRAGMA user_version = {m.version:d}")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SchemaError(
                    f"{name or 'database'}: migration {m.version} ({m.description}) failed: {exc}"
                ) from exc
            raise
        conn.execute("COMMIT")
        applied.append(m.version)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT on its own)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
