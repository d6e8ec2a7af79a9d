"""``StoreLedger``: the daemon's ``Ledger`` contract (``daemon/ledger.py``) on the history store.

With it the daemon keeps its events, decisions and source positions in the same database that
``analyze --store``, the digest, ``offences()`` escalation and ``mailward db`` read, in the
compact encoding, instead of a second file. Thread-safe: the daemon calls it through
``asyncio.to_thread``, one call at a time from varying threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

from mailward.decisions.model import Action, Decision
from mailward.events import Event
from mailward.storage.reader import Alert, PruneResult
from mailward.storage.sqlite import DEFAULT_RETENTION_DAYS, SqliteStore


class StoreLedger:
    def __init__(
        self, path: str | os.PathLike[str], *, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        self.store = SqliteStore(path, retention_days=retention_days, any_thread=True)
        self.path = self.store.path
        self._lock = threading.Lock()

    def load_positions(self) -> dict[str, str]:
        with self._lock:
            return self.store.source_positions()

    def commit(
        self,
        events: Sequence[Event],
        decisions: Sequence[Decision],
        positions: Mapping[str, str],
    ) -> None:
        with self._lock:
            self.store.commit(events, decisions, positions)

    def active_decisions(self, now: float) -> list[Decision]:
        """BAN decisions in force (what the enforcer restores); protections are left out."""
        with self._lock:
            return [d for d in self.store.active_decisions(now) if d.action is Action.BAN]

    def recent_decisions(self, limit: int = 20) -> list[Decision]:
        with self._lock:
            return self.store.recent_decisions(limit)

    def event_count(self) -> int:
        with self._lock:
            return self.store.count_events()

    def offences(self, target: str, since: float) -> int:
        """Offender history for escalation (``detectors.history.OffenceSource``)."""
        with self._lock:
            return self.store.offences(target, since)

    def add_alert(self, alert: Alert) -> None:
        """Keep a raised alert (the digest lists them), on the same single writer connection."""
        with self._lock:
            self.store.add_alert(alert)

    def prune(self, now: float) -> PruneResult:
        """Apply ``storage.retention_days`` (the daemon calls it daily)."""
        with self._lock:
            return self.store.prune(now)

    def close(self) -> None:
        with self._lock:
            self.store.close()
