"""The long-term store: events, decisions, alerts and import positions in one SQLite file.

WAL mode, one writer connection (``SqliteStore``) and any number of read-only ones
(``SqliteReader``); the schema is migrated on open (``schema.py``). Rows are compact: interned
strings, IPs as 4/16-byte blobs, REAL timestamps stored as integers when whole (``codec.py``).
Layout, sizes and migrations are described in ``docs/storage.md``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mailward.decisions.model import Action, Decision
from mailward.errors import InputError
from mailward.events import Event
from mailward.storage import schema
from mailward.storage.codec import COLUMNS, Codec, decode_ip

if TYPE_CHECKING:
    from mailward.config.model import Settings

DAY = 86400.0
DEFAULT_RETENTION_DAYS = 400
BATCH = 20_000  # rows per executemany; add_events commits per batch when not inside a transaction
STRING_CACHE = 200_000  # interned strings kept in memory per connection (attackers pick usernames)
FILE_MODE = 0o640
DIR_MODE = 0o750

_SELECT_EVENT = "SELECT " + ", ".join(COLUMNS) + " FROM events"

IPAddress = IPv4Address | IPv6Address

# Python's sqlite3 (3.11) binds None through its adapter protocol, raising and swallowing two
# AttributeErrors per value; an identity adapter makes it a dict hit. Semantics are unchanged.
sqlite3.register_adapter(type(None), lambda _: None)


@dataclass(frozen=True, slots=True)
class HourCount:
    """One hour bucket of one kind: ``hour`` is the POSIX second the hour starts at."""

    hour: float
    kind: str
    events: int
    attempts: int  # events weighted by their ``attempts`` (session summaries count N)
    distinct_ips: int


@dataclass(frozen=True, slots=True)
class Alert:
    ts: float
    kind: str
    severity: str
    message: str
    key: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PruneResult:
    cutoff: float
    events: int
    decisions: int
    alerts: int
    strings: int


def _ro_uri(path: Path) -> str:
    return f"file:{quote(str(path))}?mode=ro"


class SqliteReader:
    """Read queries on one connection. Not thread-safe: one reader per thread."""

    def __init__(self, path: str | os.PathLike[str], *, _conn: sqlite3.Connection | None = None):
        self.path = Path(path)
        if _conn is None:
            if not self.path.is_file():
                raise InputError(f"{self.path}: no mailward database here")
            try:
                # check_same_thread off: a reader is used by one thread at a time but may be
                # closed by the thread that owns the pool.
                _conn = sqlite3.connect(
                    _ro_uri(self.path), uri=True, isolation_level=None, check_same_thread=False
                )
                _conn.execute("PRAGMA busy_timeout = 5000")
                v = schema.version(_conn)
            except sqlite3.DatabaseError as exc:
                raise InputError(f"{self.path}: not a readable mailward database ({exc})") from exc
            if v != schema.LATEST:
                _conn.close()
                raise InputError(
                    f"{self.path}: schema version {v}, expected {schema.LATEST} "
                    "(open it once with the writer to migrate)"
                )
        self._conn = _conn
        self._names: dict[int, str] = {}
        self.codec = Codec(lambda _: None, self._intern_readonly, self._resolve)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- interning (read side) --------------------------------------------------------------
    def _resolve(self, sid: int) -> str:
        name = self._names.get(sid)
        if name is None:
            row = self._conn.execute("SELECT value FROM strings WHERE id = ?", (sid,)).fetchone()
            if row is None:
                raise LookupError(f"{self.path}: dangling string id {sid}")
            if len(self._names) >= STRING_CACHE:
                self._names.clear()
            name = self._names[sid] = row[0]
        return name

    def _intern_readonly(self, value: str) -> int:
        raise RuntimeError("a read-only connection cannot intern strings")

    def _ids(self, values: Iterable[str]) -> list[int]:
        vals = [str(v) for v in values]
        if not vals:
            return []
        q = f"SELECT id FROM strings WHERE value IN ({', '.join('?' * len(vals))})"
        return [r[0] for r in self._conn.execute(q, vals)]

    def _window(
        self, since: float | None, until: float | None, kinds: Iterable[str] | None, col: str = "ts"
    ) -> tuple[str, list[Any]]:
        """WHERE clause for ``since <= ts < until`` and ``kind IN kinds``."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append(f"{col} >= ?")
            args.append(since)
        if until is not None:
            where.append(f"{col} < ?")
            args.append(until)
        if kinds is not None:
            ids = self._ids(kinds)
            where.append(f"kind IN ({', '.join(str(int(i)) for i in ids) or 'NULL'})")
        return (" WHERE " + " AND ".join(where)) if where else "", args

    # -- events -----------------------------------------------------------------------------
    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Event]:
        """Typed events with ``since <= ts < until``, oldest first, streamed from the database."""
        where, args = self._window(since, until, kinds)
        decode = self.codec.decode
        cur = self._conn.execute(f"{_SELECT_EVENT}{where} ORDER BY ts, id", args)
        while rows := cur.fetchmany(2000):
            for row in rows:
                yield decode(row)

    def count_events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> int:
        where, args = self._window(since, until, kinds)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()[0])

    def span(self) -> tuple[float, float] | None:
        """Oldest and newest event time, or None when there are no events."""
        lo, hi = self._conn.execute("SELECT MIN(ts), MAX(ts) FROM events").fetchone()
        return None if lo is None else (float(lo), float(hi))

    def counts_per_hour(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[HourCount]:
        """Events, attempts and distinct IPs per UTC hour and kind, oldest first."""
        where, args = self._window(since, until, kinds)
        q = (
            "SELECT CAST(ts / 3600 AS INTEGER) AS h, kind, COUNT(*), "
            "SUM(attempts), COUNT(DISTINCT ip) "
            f"FROM events{where} GROUP BY h, kind ORDER BY h, kind"
        )
        return [
            HourCount(float(h * 3600), self._resolve(k), n, att, ips)
            for h, k, n, att, ips in self._conn.execute(q, args)
        ]

    def top_ips(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[IPAddress, int]]:
        """Addresses with the most attempts (events weighted by ``attempts``)."""
        where, args = self._window(since, until, kinds)
        where += " AND ip IS NOT NULL" if where else " WHERE ip IS NOT NULL"
        q = (
            f"SELECT ip, SUM(attempts) AS n FROM events{where} "
            "GROUP BY ip ORDER BY n DESC, ip LIMIT ?"
        )
        out: list[tuple[IPAddress, int]] = []
        for ip, n in self._conn.execute(q, [*args, limit]):
            addr = decode_ip(ip)
            assert addr is not None
            out.append((addr, n))
        return out

    def top_prefixes(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
        *,
        v4: int = 24,
        v6: int = 64,
    ) -> list[tuple[IPv4Network | IPv6Network, int, int]]:
        """(prefix, attempts, distinct addresses), busiest first. IPv6 lengths must be multiples
        of 8 (IPv6 is a blob, grouped by its leading bytes)."""
        if not 0 < v4 <= 32 or v6 % 8 or not 0 < v6 <= 128:
            raise ValueError("prefix lengths: v4 in 1..32, v6 a multiple of 8 in 8..128")
        where, args = self._window(since, until, kinds)
        where += " AND ip IS NOT NULL" if where else " WHERE ip IS NOT NULL"
        q = (
            f"SELECT CASE typeof(ip) WHEN 'integer' THEN ip >> {32 - v4} "
            f"ELSE substr(ip, 1, {v6 // 8}) END AS p, SUM(attempts) AS n, COUNT(DISTINCT ip)"
            f" FROM events{where} GROUP BY p ORDER BY n DESC, p LIMIT ?"
        )
        out: list[tuple[IPv4Network | IPv6Network, int, int]] = []
        for p, n, distinct in self._conn.execute(q, [*args, limit]):
            if type(p) is int:
                net: IPv4Network | IPv6Network = IPv4Network((p << (32 - v4), v4))
            else:
                net = IPv6Network((bytes(p) + bytes(16 - len(p)), v6))
            out.append((net, n, distinct))
        return out

    def top_usernames(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[str, int]]:
        """Usernames (or probed recipients) with the most attempts."""
        where, args = self._window(since, until, kinds)
        where += " AND user != 0" if where else " WHERE user != 0"
        q = (
            f"SELECT user, SUM(attempts) AS n FROM events{where} "
            "GROUP BY user ORDER BY n DESC, user LIMIT ?"
        )
        return [(self._resolve(u), n) for u, n in self._conn.execute(q, [*args, limit])]

    # -- decisions --------------------------------------------------------------------------
    def _decision(self, row: Sequence[Any]) -> Decision:
        ts, target, action, rule, until, reason, offence, evidence = row
        return Decision(
            ts=ts,
            target=target,
            action=Action(self._resolve(action)),
            rule=self._resolve(rule),
            until=until,
            reason=reason,
            offence=offence,
            evidence=json.loads(evidence),
        )

    _DECISION_COLS = "ts, target, action, rule, until, reason, offence, evidence"

    def decisions(
        self, since: float | None = None, until: float | None = None, *, target: str | None = None
    ) -> list[Decision]:
        """Decisions taken in ``since <= ts < until`` (optionally about one target), oldest first."""
        where, args = self._window(since, until, None)
        if target is not None:
            where += " AND target = ?" if where else " WHERE target = ?"
            args.append(target)
        q = f"SELECT {self._DECISION_COLS} FROM decisions{where} ORDER BY ts, id"
        return [self._decision(r) for r in self._conn.execute(q, args)]

    def active_decisions(self, now: float) -> list[Decision]:
        """What is in force at ``now``: per target and action, the latest decision taken at or
        before ``now`` that has not expired and was not lifted by a later UNBAN of that target."""
        unban = self._ids([Action.UNBAN.value])
        unban_id = unban[0] if unban else -1
        lifted = dict(
            self._conn.execute(
                "SELECT target, MAX(ts) FROM decisions WHERE action = ? AND ts <= ? GROUP BY target",
                (unban_id, now),
            ).fetchall()
        )
        q = (
            f"SELECT {self._DECISION_COLS} FROM decisions WHERE action != ? AND ts <= ? "
            "AND (until IS NULL OR until > ?) ORDER BY ts, id"
        )
        latest: dict[tuple[str, int], Sequence[Any]] = {}
        for row in self._conn.execute(q, (unban_id, now, now)):
            ts, target, action = row[0], row[1], row[2]
            if target in lifted and lifted[target] >= ts:
                continue
            latest[(target, action)] = row
        return [self._decision(r) for r in sorted(latest.values(), key=lambda r: (r[0], r[1]))]

    def offences(self, target: str, since: float) -> int:
        """How many times ``target`` was banned at or after ``since`` (escalation history)."""
        ban = self._ids([Action.BAN.value])
        if not ban:
            return 0
        row = self._conn.execute(
            "SELECT COUNT(*) FROM decisions WHERE target = ? AND ts >= ? AND action = ?",
            (target, since, ban[0]),
        ).fetchone()
        return int(row[0])

    # -- alerts, imports, stats -------------------------------------------------------------
    def alerts(self, since: float | None = None, until: float | None = None) -> list[Alert]:
        where, args = self._window(since, until, None)
        q = f"SELECT ts, kind, severity, message, key, data FROM alerts{where} ORDER BY ts, id"
        return [
            Alert(ts, self._resolve(k), self._resolve(s), msg, key, json.loads(data))
            for ts, k, s, msg, key, data in self._conn.execute(q, args)
        ]

    def import_position(self, identity: str) -> int:
        """Decompressed byte offset already imported from the file with this identity (0 if new)."""
        row = self._conn.execute(
            "SELECT offset FROM imports WHERE identity = ?", (identity,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def stats(self) -> dict[str, int]:
        """Row counts and size on disk (for ``status``/``doctor``)."""
        c = self._conn
        out = {
            "schema_version": schema.version(c),
            "events": c.execute("SELECT COUNT(*) FROM events").fetchone()[0],
            "decisions": c.execute("SELECT COUNT(*) FROM decisions").fetchone()[0],
            "alerts": c.execute("SELECT COUNT(*) FROM alerts").fetchone()[0],
            "strings": c.execute("SELECT COUNT(*) FROM strings").fetchone()[0],
            "imports": c.execute("SELECT COUNT(*) FROM imports").fetchone()[0],
        }
        page = c.execute("PRAGMA page_size").fetchone()[0]
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        out["bytes"] = page * pages
        out["free_bytes"] = page * free
        return out


class SqliteStore(SqliteReader):
    """The writer. Exactly one per database file at a time (the daemon's ``AsyncStore`` owns it);
    every write method is one transaction, or joins the caller's ``transaction()``."""

    def __init__(
        self, path: str | os.PathLike[str], *, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        p = Path(path)
        self.retention_days = retention_days
        conn = self._open(p)
        super().__init__(p, _conn=conn)
        self._str_ids: dict[str, int] = {}
        self._pending: list[tuple[str, int]] = []  # strings inserted in the open transaction
        self._depth = 0
        self.codec = Codec(self._str_ids.get, self._intern, self._resolve)
        self._encoders: dict[type[Event], Callable[[Event, int], tuple[Any, ...]]] = {}
        self._insert_stmts: dict[type[Event], str] = {}
        self._next_id = self._load_next_id()

    def _load_next_id(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'next_event_id'").fetchone()
        return int(row[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteStore:
        return cls(settings.db_path, retention_days=settings.storage.retention_days)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
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
            conn = sqlite3.connect(path, isolation_level=None)
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
        sid = self._str_ids.get(value)
        if sid is not None:
            return sid
        key = value  # a StrEnum member hashes by name, so it gets its own cache entry
        value = str(value)  # ... and is stored as its plain value
        conn = self._conn
        row = conn.execute("SELECT id FROM strings WHERE value = ?", (value,)).fetchone()
        if row is None:
            if self._depth == 0:
                raise RuntimeError("strings are interned only inside a transaction")
            sid = conn.execute("INSERT INTO strings (value) VALUES (?)", (value,)).lastrowid
            assert sid is not None
            self._pending.append((value, sid))
            if key is not value:
                self._pending.append((key, sid))
        else:
            sid = row[0]
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
        groups: dict[type[Event], list[tuple[Any, ...]]] = {}
        row_id = first = self._next_id
        try:
            for ev in it:
                cls = type(ev)
                enc = encoders.get(cls)
                if enc is None:
                    enc = encoders[cls] = self.codec.encoder(cls).fn
                groups.setdefault(cls, []).append(enc(ev, row_id))
                row_id += 1
                if row_id - first >= BATCH:
                    break
            # One statement per kind binds only that kind's columns; ids keep the input order.
            for cls, rows in groups.items():
                if rows:
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
                    json.dumps(dict(decision.evidence), sort_keys=True, ensure_ascii=False),
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
