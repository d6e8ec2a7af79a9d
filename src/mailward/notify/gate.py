"""Deduplication, cooldowns and grouping between the alert rules and the channels.

An alert whose key was sent less than ``cooldown`` ago is held back and counted (the count rides
along with the next alert of that key). Accepted alerts wait up to ``group_seconds`` so a burst
becomes one message; a critical alert flushes the batch at once. The ledger lives in the spool's
database, so restarts never cause floods.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.notify.model import Alert, Severity
from mailward.notify.spool import Spool


@dataclass(frozen=True, slots=True)
class Batch:
    alerts: tuple[Alert, ...]
    held: dict[str, tuple[int, float]]  # key -> (repeats held back, since)


class Gate:
    def __init__(
        self,
        spool: Spool,
        *,
        cooldown: float,
        group_seconds: float,
        min_severity: Severity = Severity.WARNING,
    ) -> None:
        self.spool = spool
        self.cooldown = cooldown
        self.group_seconds = group_seconds
        self.min_severity = min_severity
        self._batch: dict[str, Alert] = {}
        self._opened: float | None = None
        self._urgent = False
        self.held_back = 0
        self.below_severity = 0

    def offer(self, alert: Alert, now: float) -> bool:
        """Take an alert; False when it is held back (cooldown) or below ``min_severity``."""
        if alert.severity < self.min_severity:
            self.below_severity += 1
            return False
        if alert.key in self._batch:
            self._batch[alert.key] = alert  # the newest numbers win within one batch
            return True
        ledger = self.spool.last_sent(alert.key)
        if ledger is not None and now - ledger[0] < self.cooldown:
            self.spool.mark_held(alert.key, now)
            self.held_back += 1
            return False
        self._batch[alert.key] = alert
        if self._opened is None:
            self._opened = now
        self._urgent = self._urgent or alert.severity >= Severity.CRITICAL
        return True

    def flush(self, now: float, *, force: bool = False) -> Batch | None:
        """The batch to send now, if its grouping window is over (or it is urgent/forced)."""
        if not self._batch or self._opened is None:
            return None
        if not (force or self._urgent or now - self._opened >= self.group_seconds):
            return None
        alerts = tuple(self._batch.values())
        held: dict[str, tuple[int, float]] = {}
        for alert in alerts:
            ledger = self.spool.last_sent(alert.key)
            if ledger is not None and ledger[1] and ledger[2] is not None:
                held[alert.key] = (ledger[1], ledger[2])
            self.spool.mark_sent(alert.key, now)
        self._batch.clear()
        self._opened = None
        self._urgent = False
        return Batch(alerts, held)
