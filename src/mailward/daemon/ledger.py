"""The daemon's ledger: what it has processed and decided, and where each source stands.

``commit(events, decisions, positions)`` is ONE transaction, so after a crash a source resumes
exactly after the last line whose events and decisions were recorded: nothing lost, nothing
counted twice. ``SqliteLedger`` is the real one (WAL, synchronous=FULL); ``MemoryLedger`` the twin.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Protocol

from mailward.decisions.model import Action, Decision
from mailward.events import Event


class Ledger(Protocol):
    def load_positions(self) -> dict[str, str]:
        """Saved source positions by source name (opaque strings the sources understand)."""
        ...

    def commit(
        self,
        events: Sequence[Event],
        decisions: Sequence[Decision],
        positions: Mapping[str, str],
    ) -> None:
        """Record events, decisions and the positions they were read up to, atomically."""
        ...

    def active_decisions(self, now: float) -> list[Decision]:
        """BAN decisions in force at ``now`` (not expired, not lifted by a later UNBAN)."""
        ...

    def recent_decisions(self, limit: int = 20) -> list[Decision]:
        """Newest first."""
        ...

    def event_count(self) -> int: ...

    def offences(self, target: str, since: float) -> int:
        """Detector bans of ``target`` at or after ``since`` (escalation across restarts)."""
        ...

    def close(self) -> None: ...


def active_from(decisions: Sequence[Decision], now: float) -> list[Decision]:
    """Fold a chronological decision list into the bans in force at ``now``."""
    bans: dict[str, Decision] = {}
    for d in decisions:
        if d.is_user or d.action not in (Action.BAN, Action.UNBAN):
            continue
        if d.action is Action.BAN:
            old = bans.get(d.target)
            if old is None or _later(d.until, old.until):
                bans[d.target] = d
            continue
        try:
            lifted = ip_network(d.target, strict=False)
        except ValueError:
            continue
        for target in list(bans):
            try:
                net = ip_network(target, strict=False)
            except ValueError:
                continue
            if net.version == lifted.version and net.subnet_of(lifted):  # type: ignore[arg-type]
                del bans[target]
    return [d for d in bans.values() if d.until is None or d.until > now]


def _later(a: float | None, b: float | None) -> bool:
    return b is not None and (a is None or a > b)


def decision_row(d: Decision) -> tuple[Any, ...]:
    return (
        d.ts,
        d.target,
        d.action.value,
        d.rule,
        d.until,
        d.reason,
        d.offence,
        json.dumps(dict(d.evidence), sort_keys=True),
    )


def decision_from_row(row: Sequence[Any]) -> Decision:
    ts, target, action, rule, until, reason, offence, evidence = row
    return Decision(
        ts=ts,
        target=target,
        action=Action(action),
        rule=rule,
        until=until,
        reason=reason,
        offence=offence,
        evidence=json.loads(evidence),
    )


class MemoryLedger:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.decisions: list[Decision] = []
        self.positions: dict[str, str] = {}
        self.commits = 0

    def load_positions(self) -> dict[str, str]:
        return dict(self.positions)

    def commit(
        self,
        events: Sequence[Event],
        decisions: Sequence[Decision],
        positions: Mapping[str, str],
    ) -> None:
        self.events.extend(events)
        self.decisions.extend(decisions)
        self.positions.update(positions)
        self.commits += 1

    def active_decisions(self, now: float) -> list[Decision]:
        return active_from(sorted(self.decisions, key=lambda d: d.ts), now)

    def recent_decisions(self, limit: int = 20) -> list[Decision]:
        return sorted(self.decisions, key=lambda d: d.ts, reverse=True)[:limit]

    def event_count(self) -> int:
        return len(self.events)

    def offences(self, target: str, since: float) -> int:
        return sum(
            1
            for d in self.decisions
            if d.target == target
            and d.action is Action.BAN
            and d.rule != "manual"
            and d.ts >= since
        )

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, ip TEXT,
    source TEXT, line INTEGER, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, target TEXT NOT NULL, action TEXT NOT NULL,
    rule TEXT NOT NULL, until REAL, reason TEXT NOT NULL, offence INTEGER NOT NULL,
    evidence TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_until ON decisions(until);
CREATE INDEX IF NOT EXISTS decisions_target ON decisions(target, ts);
"""


class SqliteLedger:
    """One connection guarded by a lock (the daemon calls it from one worker thread at a time)."""

    def __init__(self, path: Path, *, keep_events: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.keep_events = keep_events
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def load_positions(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT source, position FROM positions").fetchall())

    def commit(
        self,
        events: Sequence[Event],
        decisions: Sequence[Decision],
        positions: Mapping[str, str],
    ) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if self.keep_events and events:
                    db.executemany(
                        "INSERT INTO events(ts, kind, ip, source, line, body) VALUES (?,?,?,?,?,?)",
                        [
                            (
                                e.ts,
                                e.kind,
                                None if e.ip is None else str(e.ip),
                                e.origin.source if e.origin else None,
                                e.origin.line if e.origin else None,
                                json.dumps(e.to_json(), separators=(",", ":")),
                            )
                            for e in events
                        ],
                    )
                if decisions:
                    db.executemany(
                        "INSERT INTO decisions(ts, target, action, rule, until, reason, offence, "
                        "evidence) VALUES (?,?,?,?,?,?,?,?)",
                        [decision_row(d) for d in decisions],
                    )
                if positions:
                    db.executemany(
                        "INSERT INTO positions(source, position) VALUES (?, ?) "
                        "ON CONFLICT(source) DO UPDATE SET position = excluded.position",
                        list(positions.items()),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def active_decisions(self, now: float) -> list[Decision]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, target, action, rule, until, reason, offence, evidence FROM decisions "
                "WHERE action IN ('ban', 'unban') AND (until IS NULL OR until > ? OR action = 'unban') "
                "ORDER BY ts, id",
                (now,),
            ).fetchall()
        return active_from([decision_from_row(r) for r in rows], now)

    def recent_decisions(self, limit: int = 20) -> list[Decision]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, target, action, rule, until, reason, offence, evidence FROM decisions "
                "ORDER BY ts DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [decision_from_row(r) for r in rows]

    def event_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def offences(self, target: str, since: float) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM decisions WHERE target = ? AND action = 'ban' "
                "AND rule != 'manual' AND ts >= ?",
                (target, since),
            ).fetchone()
        return int(row[0])

    def events_json(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM events ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
