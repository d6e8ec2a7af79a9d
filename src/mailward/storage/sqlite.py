"""The long-term store's writer: events, decisions, alerts and import positions in one file.

WAL mode, exactly one writer connection (``SqliteStore``, which also answers every read query of
``reader.py``) and any number of read-only ``SqliteReader``s; the schema is migrated on open
(``schema.py``). Rows are compact: interned strings, IPv4 as integers and IPv6 as 16-byte blobs,
REAL timestamps stored as integers when whole (``codec.py``). See ``docs/storage.md``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailward.decisions.model import Action, Decision
from mailward.errors import InputError
from mailward.events import Event
from mailward.storage import schema
from mailward.storage.codec import Codec
from mailward.storage.reader import (
    STRING_CACHE,
    Alert,
    HourCount,
    PruneResult,
    SqliteReader,
)

if TYPE_CHECKING:
    from mailward.config.model import Settings

DAY = 86400.0
DEFAULT_RETENTION_DAYS = 400
BATCH = 20_000  # rows per executemany; add_events commits per batch when not inside a transaction
FILE_MODE = 0o640
_Encode = Callable[[Event, int], tuple[Any, ...]]
DIR_MODE = 0o750

# Python's sqlite3 (3.11) binds None and bytes (IPv6 addresses) through its adapter protocol,
# raising and swallowing two AttributeErrors per value; identity adapters make that a dict hit.
# Semantics are unchanged.
sqlite3.register_adapter(type(None), lambda _: None)
sqlite3.register_adapter(bytes, lambda b: b)


class SqliteStore(SqliteReader):
    """The writer. Exactly one per database file at a time (the daemon's ``AsyncStore`` owns it);
    every write method is one transaction, or joins the caller's ``transaction()``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        any_thread: bool = False,
    ) -> None:
        """``any_thread``: the caller serialises access itself but from varying threads (e.g.
        ``asyncio.to_thread`` behind a lock); otherwise only the opening thread may use it."""
        p = Path(path)
        self.retention_days = retention_days
        conn = self._open(p, any_thread)
        super().__init__(p, _conn=conn)
        self._str_ids: dict[str, int] = {}
        self._pending: list[tuple[str, int]] = []  # strings inserted in the open transaction
        self._depth = 0
        self.codec = Codec(self._str_ids.get, self._intern, self._resolve)
        self._encoders: dict[type[Event], _Encode] = {}
        self._insert_stmts: dict[type[Event], str] = {}
        self._next_id = self._load_next_id()

    def _load_next_id(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'next_event_id'").fetchone()
        return int(row[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteStore:
        return cls(settings.db_path, retention_days=settings.storage.retention_days)

    @staticmethod
    def _open(path: Path, any_thread: bool = False) -> sqlite3.Connection:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a database file")
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=DIR_MODE, parents=True)
            if not path.exists():
                # Create it ourselves so SQLite (and its -wal/-shm, which copy the database's
                # mode) never makes it world-readable: usernames and addresses are personal data.
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        except OSError as exc:
            raise InputError(f"{path}: cannot create the database: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=not any_thread)
        except sqlite3.Error as exc:
            raise InputError(f"{path}: cannot open the database: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            if (
                schema.version(conn) == 0
                and not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
            ):
                # Only possible before the first table: lets prune() hand pages back to the OS.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise InputError(f"{path}: cannot switch the database to WAL mode (got {mode})")
            # NORMAL is durable across application crashes in WAL mode; a power cut may lose the
            # last commits but never corrupts, and imports re-read from the stored position.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32000")
            conn.execute("PRAGMA temp_store = MEMORY")
            schema.migrate(conn, name=str(path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise InputError(f"{path}: not a usable mailward database ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (nested calls become savepoints, so a failing job undoes only itself)."""
        conn = self._conn
        depth = self._depth
        mark = len(self._pending)
        if depth == 0:
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.execute(f"SAVEPOINT s{depth}")
        self._depth = depth + 1
        try:
            yield
        except BaseException:
            self._depth = depth
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO s{depth}")
                conn.execute(f"RELEASE s{depth}")
            self._forget_pending(mark)
            self.codec.forget()
            self._next_id = self._load_next_id()
            raise
        self._depth = depth
        if depth == 0:
            conn.execute("COMMIT")
            self._pending.clear()
        else:
            conn.execute(f"RELEASE s{depth}")

    def _forget_pending(self, mark: int) -> None:
        # Strings interned inside the rolled-back part no longer exist; their ids may be reused.
        for value, sid in self._pending[mark:]:
            self._str_ids.pop(value, None)
            self._names.pop(sid, None)
        del self._pending[mark:]

    def _intern(self, value: str) -> int:
        known = self._str_ids.get(value)
        if known is not None:
            return known
        key = value  # a StrEnum member hashes by name, so it gets its own cache entry
        value = str(value)  # ... and is stored as its plain value
        if self._depth == 0:
            raise RuntimeError("strings are interned only inside a transaction")
        # One statement for both cases: insert a new string, or return the id of a known one.
        sid: int = self._conn.execute(
            "INSERT INTO strings (value) VALUES (?) ON CONFLICT (value) "
            "DO UPDATE SET value = excluded.value RETURNING id",
            (value,),
        ).fetchone()[0]
        # Forgotten if the transaction rolls back (a new id would be reused then).
        self._pending.append((value, sid))
        if key is not value:
            self._pending.append((key, sid))
        if len(self._str_ids) >= STRING_CACHE:
            self._str_ids.clear()
        self._str_ids[value] = sid
        self._str_ids[key] = sid
        return sid

    # -- writes -----------------------------------------------------------------------------
    def add_events(self, events: Iterable[Event]) -> int:
        """Store events; returns how many. Commits every ``BATCH`` events unless called inside
        ``transaction()`` (then the caller's transaction holds them all)."""
        total = 0
        it = iter(events)
        while True:
            with self.transaction():
                n = self._insert_batch(it)
            total += n
            if n < BATCH:
                return total

    def _insert_batch(self, it: Iterator[Event]) -> int:
        """Insert up to ``BATCH`` events from ``it`` (inside a transaction); returns how many."""
        encoders = self._encoders
        groups: dict[type[Event], tuple[_Encode, list[tuple[Any, ...]]]] = {}
        row_id = first = self._next_id
        last = first + BATCH
        try:
            for ev in it:
                cls = ev.__class__
                try:
                    enc, rows = groups[cls]
                except KeyError:
                    enc = encoders.get(cls) or encoders.setdefault(cls, self.codec.encoder(cls).fn)
                    rows = []
                    groups[cls] = (enc, rows)
                rows.append(enc(ev, row_id))
                row_id += 1
                if row_id >= last:
                    break
            # One statement per kind binds only that kind's columns; ids keep the input order.
            for cls, (_, rows) in groups.items():
                self._conn.executemany(self._insert_sql(cls), rows)
            if row_id != first:
                self._conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_event_id'", (row_id,)
                )
        except BaseException:
            self._next_id = first
            raise
        self._next_id = row_id
        return row_id - first

    def _insert_sql(self, cls: type[Event]) -> str:
        sql = self._insert_stmts.get(cls)
        if sql is None:
            cols = self.codec.encoder(cls).columns
            sql = f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            self._insert_stmts[cls] = sql
        return sql

    def import_batch(
        self, identity: str, offset: int, events: Iterable[Event], *, path: str | None = None
    ) -> int:
        """Store events read from a file and the offset read up to, atomically: after a crash
        either both are stored or neither, so resuming from ``import_position`` loses and repeats
        nothing."""
        with self.transaction():
            n = self.add_events(events)
            self.set_import_position(identity, offset, path=path)
        return n

    def set_import_position(self, identity: str, offset: int, *, path: str | None = None) -> None:
        if offset < 0:
            raise ValueError("offset must be >= 0")
        with self.transaction():
            self._conn.execute(
                "INSERT INTO imports (identity, offset, updated, path) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (identity) DO UPDATE SET "
                "offset = excluded.offset, updated = excluded.updated, "
                "path = COALESCE(excluded.path, imports.path)",
                (identity, offset, time.time(), path),
            )

    def commit(
        self,
        events: Sequence[Event],
        decisions: Sequence[Decision],
        positions: Mapping[str, str],
    ) -> None:
        """Events, decisions and the live-source positions they were read up to, atomically
        (the daemon's ledger contract: after a crash a source resumes exactly after them)."""
        with self.transaction():
            if events:
                self.add_events(events)
            for d in decisions:
                self.add_decision(d)
            if positions:
                now = time.time()
                self._conn.executemany(
                    "INSERT INTO source_positions (source, position, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET position = excluded.position, "
                    "updated = excluded.updated",
                    [(k, v, now) for k, v in positions.items()],
                )

    def add_decision(self, decision: Decision) -> int:
        """Store one decision; returns its row id."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO decisions (ts, target, action, rule, until, reason, offence, evidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decision.ts,
                    decision.target,
                    self._intern(decision.action.value),
                    self._intern(decision.rule),
                    decision.until,
                    decision.reason,
                    decision.offence,
                    json.dumps(
                        dict(decision.evidence), sort_keys=True, ensure_ascii=False, default=str
                    ),
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_alert(self, alert: Alert) -> int:
        """Log an alert that was raised (the digest lists them)."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO alerts (ts, kind, severity, key, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    alert.ts,
                    self._intern(alert.kind),
                    self._intern(alert.severity),
                    alert.key,
                    alert.message,
                    json.dumps(dict(alert.data), sort_keys=True, ensure_ascii=False, default=str),
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def prune(self, now: float, *, compact: bool = False) -> PruneResult:
        """Delete what is older than ``retention_days``: events, alerts, and decisions that were
        taken before the cutoff and have expired (a permanent ban is kept). ``compact`` also drops
        interned strings nothing refers to any more and returns free pages to the file system."""
        cutoff = now - self.retention_days * DAY
        c = self._conn
        with self.transaction():
            ev = c.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            de = c.execute(
                "DELETE FROM decisions WHERE ts < ? AND until IS NOT NULL AND until < ?",
                (cutoff, now),
            ).rowcount
            # An UNBAN has no expiry; once older than the cutoff it lifts nothing still stored.
            unban = self._ids([Action.UNBAN.value])
            if unban:
                de += c.execute(
                    "DELETE FROM decisions WHERE ts < ? AND action = ?", (cutoff, unban[0])
                ).rowcount
            al = c.execute("DELETE FROM alerts WHERE ts < ?", (cutoff,)).rowcount
            st = 0
            if compact:
                used = " UNION ".join(
                    f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL"
                    for table, cols in (
                        ("events", ("kind", "service", "user", "t1", "t2", "t3", "src")),
                        ("decisions", ("action", "rule")),
                        ("alerts", ("kind", "severity")),
                    )
                    for col in cols
                )
                st = c.execute(f"DELETE FROM strings WHERE id NOT IN ({used})").rowcount
        if compact:
            self._str_ids.clear()
            self._names.clear()
            self.codec.forget()
            if self._depth == 0:  # both need to run outside a transaction
                c.execute("PRAGMA incremental_vacuum")
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return PruneResult(cutoff, ev, de, al, st)

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (after a big import)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def reader(self) -> SqliteReader:
        """A new read-only connection to the same file (for another thread)."""
        return SqliteReader(self.path)

    def run(self, fn: Callable[[SqliteStore], Any]) -> Any:
        """Run ``fn(self)`` in one transaction (the unit of work ``AsyncStore.write`` uses)."""
        with self.transaction():
            return fn(self)


def open_store(settings: Settings) -> SqliteStore:
    """The writer for the configured database (``storage.path`` or ``<state_dir>/mailward.db``)."""
    return SqliteStore.from_settings(settings)


__all__ = [
    "Alert",
    "HourCount",
    "PruneResult",
    "SqliteReader",
    "SqliteStore",
    "open_store",
]
