"""The enforcement edge: an ``Enforcer`` turns BAN decisions on addresses and prefixes into
blocks that expire on their own, and lifts them on UNBAN. ``MemoryEnforcer`` is the in-memory twin
tests use; ``DryRunEnforcer`` only logs. User targets and non-ban actions are not enforced here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from mailward.decisions.model import Action, Decision
from mailward.enforcers.bantable import BanTable, Change, Net, as_network

log = logging.getLogger(__name__)


@runtime_checkable
class Enforcer(Protocol):
    name: str

    async def apply(self, decisions: Sequence[Decision]) -> None:
        """Enforce BAN decisions and lift UNBAN targets, in one batch."""
        ...

    async def remove(self, targets: Sequence[str]) -> None:
        """Lift the bans on these addresses or prefixes (everything inside them)."""
        ...

    async def restore(self, active: Sequence[Decision]) -> None:
        """Replace whatever is enforced by exactly ``active`` (start-up, resync)."""
        ...

    async def clear(self) -> None:
        """Lift every ban (the table and its rules stay)."""
        ...

    def status(self) -> dict[str, Any]:
        """Counts and health for ``mailward status``."""
        ...


def enforceable(decision: Decision) -> bool:
    """Only address/prefix BAN and UNBAN decisions reach the firewall."""
    return not decision.is_user and decision.action in (Action.BAN, Action.UNBAN)


def plan(table: BanTable, decisions: Sequence[Decision], now: float) -> tuple[Change, list[str]]:
    """Apply decisions to the model; return the element changes and targets that were invalid."""
    change = Change()
    bad: list[str] = []
    table.expire(now)
    for decision in decisions:
        if not enforceable(decision):
            continue
        try:
            net = as_network(decision.target)
        except ValueError:
            bad.append(decision.target)
            continue
        if decision.action is Action.UNBAN:
            change.extend(table.unban(net))
        elif decision.until is None or decision.until > now:
            change.extend(table.ban(net, decision.until))
    return change, bad


class MemoryEnforcer:
    """Keeps the bans in a ``BanTable``; records every batch so tests can look at both."""

    name = "memory"

    def __init__(self, clock: Callable[[], float]) -> None:
        self.table = BanTable()
        self.batches: list[Change] = []
        self._now = clock

    async def apply(self, decisions: Sequence[Decision]) -> None:
        change, _ = plan(self.table, decisions, self._now())
        if change:
            self.batches.append(change)

    async def remove(self, targets: Sequence[str]) -> None:
        change = Change()
        for target in targets:
            change.extend(self.table.unban(as_network(target)))
        if change:
            self.batches.append(change)

    async def restore(self, active: Sequence[Decision]) -> None:
        self.table.clear()
        await self.apply(active)

    async def clear(self) -> None:
        self.table.clear()

    def banned(self, target: str) -> bool:
        self.table.expire(self._now())
        return self.table.covers(as_network(target))

    def blocked(self) -> list[Net]:
        self.table.expire(self._now())
        return [net for net, _ in self.table.elements()]

    def status(self) -> dict[str, Any]:
        self.table.expire(self._now())
        return {
            "backend": self.name,
            "addresses": len(self.table.hosts),
            "prefixes": len(self.table.prefixes),
            "batches": len(self.batches),
        }


class DryRunEnforcer(MemoryEnforcer):
    """Logs what would be blocked and lifted; touches nothing."""

    name = "dry-run"

    async def apply(self, decisions: Sequence[Decision]) -> None:
        before = len(self.batches)
        await super().apply(decisions)
        for change in self.batches[before:]:
            _log_change(change)

    async def remove(self, targets: Sequence[str]) -> None:
        before = len(self.batches)
        await super().remove(targets)
        for change in self.batches[before:]:
            _log_change(change)

    async def clear(self) -> None:
        log.warning("dry-run: would lift all %d bans", len(self.table))
        await super().clear()


class NullEnforcer:
    """``enforce.backend = "none"``: decisions are stored and answered in-line only."""

    name = "none"

    async def apply(self, decisions: Sequence[Decision]) -> None:
        return None

    async def remove(self, targets: Sequence[str]) -> None:
        return None

    async def restore(self, active: Sequence[Decision]) -> None:
        return None

    async def clear(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"backend": self.name}


def _log_change(change: Change) -> None:
    for net in change.delete:
        log.warning("dry-run: would lift %s", net)
    for net, until in change.add:
        when = "forever" if until is None else datetime.fromtimestamp(until, UTC).isoformat()
        log.warning("dry-run: would block %s until %s", net, when)
