"""Read queries over the store: typed events in a window, counts per hour, top addresses,
prefixes and usernames, decisions in force, offender history, alerts and import positions.

``SqliteReader`` opens a read-only connection (WAL lets it read while the writer commits); the
writer ``SqliteStore`` (``sqlite.py``) inherits these queries. One reader per thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mailward.decisions.model import Action, Decision
from mailward.errors import InputError
from mailward.events import Event
from mailward.storage import schema
from mailward.storage.codec import COLUMNS, Codec, decode_ip

STRING_CACHE = 200_000  # interned strings kept in memory per connection (attackers pick usernames)

_SELECT_EVENT = "SELECT " + ", ".join(COLUMNS) + " FROM events"

IPAddress = IPv4Address | IPv6Address


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


def in_force(
    candidates: Sequence[Decision], unbans: Sequence[Decision], now: float
) -> list[Decision]:
    """The decisions in force at ``now``, the semantics every store shares.

    ``candidates``: non-UNBAN decisions taken at or before ``now`` and not expired, oldest first;
    ``unbans``: UNBAN decisions taken at or before ``now``. An UNBAN lifts the earlier decisions
    on its target and, for an address or prefix, on every address and prefix inside it. Per
    target and action the decision reaching furthest wins (extend-only: a shorter ban never
    shortens a longer one); the result is ordered by time, then target.
    """
    exact: dict[str, float] = {}
    nets: list[tuple[IPv4Network | IPv6Network, float]] = []
    for u in unbans:
        exact[u.target] = max(exact.get(u.target, u.ts), u.ts)
        if not u.is_user:
            try:
                nets.append((ip_network(u.target, strict=False), u.ts))
            except ValueError:
                pass
    best: dict[tuple[str, Action], Decision] = {}
    for d in candidates:
        if exact.get(d.target, -1.0) >= d.ts:
            continue
        if nets and not d.is_user:
            try:
                net = ip_network(d.target, strict=False)
            except ValueError:
                net = None
            if net is not None and any(
                ts >= d.ts and net.version == u.version and net.subnet_of(u)  # type: ignore[arg-type]
                for u, ts in nets
            ):
                continue
        key = (d.target, d.action)
        old = best.get(key)
        if old is None or (old.until is not None and (d.until is None or d.until > old.until)):
            best[key] = d
    return sorted(best.values(), key=lambda d: (d.ts, d.target))


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
        out = [
            HourCount(float(h * 3600), self._resolve(k), n, att, ips)
            for h, k, n, att, ips in self._conn.execute(q, args)
        ]
        out.sort(key=lambda c: (c.hour, c.kind))  # by kind name, not by interning order
        return out

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
            f"SELECT s.value, SUM(attempts) AS n FROM events JOIN strings s ON s.id = user{where}"
            " GROUP BY user ORDER BY n DESC, s.value LIMIT ?"
        )
        return [(u, n) for u, n in self._conn.execute(q, [*args, limit])]

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
        """What is in force at ``now`` (``in_force``): not expired, not lifted by a
        later UNBAN of the target or of a prefix containing it; extend-only per target."""
        unban = self._ids([Action.UNBAN.value])
        unban_id = unban[0] if unban else -1
        cols = self._DECISION_COLS
        unbans = [
            self._decision(r)
            for r in self._conn.execute(
                f"SELECT {cols} FROM decisions WHERE action = ? AND ts <= ? ORDER BY ts, id",
                (unban_id, now),
            )
        ]
        candidates = [
            self._decision(r)
            for r in self._conn.execute(
                f"SELECT {cols} FROM decisions WHERE action != ? AND ts <= ? "
                "AND (until IS NULL OR until > ?) ORDER BY ts, id",
                (unban_id, now, now),
            )
        ]
        return in_force(candidates, unbans, now)

    def recent_decisions(self, limit: int = 20) -> list[Decision]:
        """The newest decisions, newest first (``mailward status``)."""
        q = f"SELECT {self._DECISION_COLS} FROM decisions ORDER BY ts DESC, id DESC LIMIT ?"
        return [self._decision(r) for r in self._conn.execute(q, (limit,))]

    def source_positions(self) -> dict[str, str]:
        """Saved positions of live sources by name (see ``SqliteStore.commit``)."""
        return dict(self._conn.execute("SELECT source, position FROM source_positions"))

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
            "source_positions": c.execute("SELECT COUNT(*) FROM source_positions").fetchone()[0],
        }
        page = c.execute("PRAGMA page_size").fetchone()[0]
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        out["bytes"] = page * pages
        out["free_bytes"] = page * free
        return out
