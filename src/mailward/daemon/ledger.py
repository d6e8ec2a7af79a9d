"""The daemon's ledger: what it has processed and decided, and where each source stands.

``commit(events, decisions, positions)`` is ONE transaction, so after a crash a source resumes
exactly after the last line whose events and decisions were recorded: nothing lost, nothing
counted twice. The real one is ``mailward.storage.ledger.StoreLedger`` on the shared history
database (``settings.db_path``); ``MemoryLedger`` here is the twin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from typing import Protocol

from mailward.decisions.model import Action, Decision
from mailward.events import Event

DAY = 86400.0


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

    def prune(self, now: float) -> object:
        """Forget what is older than the retention period (``storage.retention_days``)."""
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


class MemoryLedger:
    def __init__(self, *, retention_days: int = 400) -> None:
        self.retention_days = retention_days
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

    def prune(self, now: float) -> int:
        """What ``SqliteStore.prune`` deletes: old events, old expired decisions, old unbans
        (a permanent ban or one still in force is kept). Returns the number of rows removed."""
        cutoff = now - self.retention_days * DAY
        before = len(self.events) + len(self.decisions)
        self.events = [e for e in self.events if e.ts >= cutoff]
        self.decisions = [
            d
            for d in self.decisions
            if d.ts >= cutoff
            or (d.action is not Action.UNBAN and (d.until is None or d.until >= now))
        ]
        return before - len(self.events) - len(self.decisions)

    def close(self) -> None:
        return None
