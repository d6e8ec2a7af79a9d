"""The ``Store`` protocol: what the pipeline asks of long-term storage, whatever is behind it.

``SqliteStore`` (``sqlite.py``) is the real one and ``MemoryStore`` (``memory.py``) its in-memory
twin; a PostgreSQL store for fleets would implement the same methods. Windows are
``since <= ts < until``; ``None`` leaves that side open.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol, runtime_checkable

from mailward.decisions.model import Decision
from mailward.events import Event
from mailward.storage.reader import Alert, HourCount, PruneResult

IPAddress = IPv4Address | IPv6Address


@runtime_checkable
class Store(Protocol):
    retention_days: int

    # -- writes
    def add_events(self, events: Iterable[Event]) -> int:
        """Store events; returns how many."""
        ...

    def import_batch(
        self, identity: str, offset: int, events: Iterable[Event], *, path: str | None = None
    ) -> int:
        """Store events and the file offset read up to, atomically."""
        ...

    def set_import_position(self, identity: str, offset: int, *, path: str | None = None) -> None:
        """Remember how far the file with this identity was imported."""
        ...

    def add_decision(self, decision: Decision) -> int:
        """Store a decision."""
        ...

    def add_alert(self, alert: Alert) -> int:
        """Log an alert that was raised."""
        ...

    def prune(self, now: float, *, compact: bool = False) -> PruneResult:
        """Delete what is older than the retention."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...

    # -- reads
    def import_position(self, identity: str) -> int:
        """Offset already imported from the file with this identity (0 if new)."""
        ...

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Event]:
        """Typed events in the window, oldest first."""
        ...

    def count_events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> int:
        """How many events are in the window."""
        ...

    def span(self) -> tuple[float, float] | None:
        """Oldest and newest event time."""
        ...

    def counts_per_hour(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[HourCount]:
        """Events, attempts and distinct IPs per UTC hour and kind."""
        ...

    def top_ips(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[IPAddress, int]]:
        """Addresses with the most attempts."""
        ...

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
        """Prefixes with the most attempts: (prefix, attempts, distinct addresses)."""
        ...

    def top_usernames(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[str, int]]:
        """Usernames (or probed recipients) with the most attempts."""
        ...

    def decisions(
        self, since: float | None = None, until: float | None = None, *, target: str | None = None
    ) -> list[Decision]:
        """Decisions taken in the window."""
        ...

    def active_decisions(self, now: float) -> list[Decision]:
        """Decisions in force at ``now``."""
        ...

    def offences(self, target: str, since: float) -> int:
        """Bans of ``target`` at or after ``since``."""
        ...

    def alerts(self, since: float | None = None, until: float | None = None) -> list[Alert]:
        """Alerts raised in the window."""
        ...
