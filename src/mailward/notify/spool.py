"""Persistent notification state in ``<state_dir>/notify.db``: the outbox and the cooldown ledger.

The outbox holds every message until a channel confirms delivery (retried with backoff, dropped
after ``spool_max_age_days``), so a crash or a dead relay loses nothing. The ledger remembers
when each alert key was last sent, so a restart never resends what was already said.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mailward.notify.model import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    last_error TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (channel, next_try);
CREATE TABLE IF NOT EXISTS alert_ledger (
    key TEXT PRIMARY KEY,
    last_sent REAL NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    held_since REAL
);
"""


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    channel: str
    created: float
    attempts: int
    message: Message


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- outbox --------------------------------------------------------------------------------

    def add(self, channel: str, message: Message, now: float) -> int:
        cur = self._db.execute(
            "INSERT INTO outbox (channel, created, next_try, payload) VALUES (?, ?, ?, ?)",
            (channel, now, now, json.dumps(message.to_json())),
        )
        return int(cur.lastrowid or 0)

    def due(self, channel: str, now: float, limit: int = 20) -> list[Pending]:
        rows = self._db.execute(
            "SELECT id, channel, created, attempts, payload FROM outbox "
            "WHERE channel = ? AND next_try <= ? ORDER BY id LIMIT ?",
            (channel, now, limit),
        ).fetchall()
        return [Pending(r[0], r[1], r[2], r[3], Message.from_json(json.loads(r[4]))) for r in rows]

    def next_due(self, channel: str) -> float | None:
        row = self._db.execute(
            "SELECT MIN(next_try) FROM outbox WHERE channel = ?", (channel,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def done(self, item_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def failed(self, item_id: int, next_try: float, error: str) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
            (next_try, error[:500], item_id),
        )

    def pending(self, channel: str | None = None) -> int:
        if channel is None:
            row = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE channel = ?", (channel,)
            ).fetchone()
        return int(row[0])

    def trim(self, channel: str, keep: int) -> int:
        """Drop the oldest messages beyond ``keep`` for a channel; returns how many."""
        cur = self._db.execute(
            "DELETE FROM outbox WHERE channel = ? AND id NOT IN "
            "(SELECT id FROM outbox WHERE channel = ? ORDER BY id DESC LIMIT ?)",
            (channel, channel, keep),
        )
        return cur.rowcount

    def expire(self, older_than: float) -> int:
        cur = self._db.execute("DELETE FROM outbox WHERE created < ?", (older_than,))
        return cur.rowcount

    # -- cooldown ledger -----------------------------------------------------------------------

    def last_sent(self, key: str) -> tuple[float, int, float | None] | None:
        row = self._db.execute(
            "SELECT last_sent, held, held_since FROM alert_ledger WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (float(row[0]), int(row[1]), row[2])

    def mark_sent(self, key: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO alert_ledger (key, last_sent, held, held_since) VALUES (?, ?, 0, NULL) "
            "ON CONFLICT(key) DO UPDATE SET last_sent = excluded.last_sent, held = 0, "
            "held_since = NULL",
            (key, now),
        )

    def mark_held(self, key: str, now: float) -> None:
        self._db.execute(
            "UPDATE alert_ledger SET held = held + 1, held_since = COALESCE(held_since, ?) "
            "WHERE key = ?",
            (now, key),
        )

    def forget_before(self, cutoff: float) -> None:
        self._db.execute("DELETE FROM alert_ledger WHERE last_sent < ?", (cutoff,))
