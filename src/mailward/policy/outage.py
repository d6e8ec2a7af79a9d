"""Alert when the followed mail logs show Postfix or Dovecot failing to reach a policy server
(``probe.match_outage``): the in-line defence was down for them, whatever the reason (the policy
component crashed, a separate ``mailward policy serve`` died). The first sign raises at once;
more signs are summarised at most once per ``interval``; the AlertManager's cooldown applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mailward.clock import Clock, SystemClock
from mailward.daemon.tasks import spawn
from mailward.notify.model import Alert
from mailward.policy.probe import OutageSign, log_outage_alert, match_outage

log = logging.getLogger(__name__)


class OutageWatch:
    """A daemon component: ``daemon.watch_lines(self.lines)``; alerts go to ``raise_alert``."""

    name = "policy-outage"

    def __init__(
        self,
        raise_alert: Callable[[Alert], None],
        *,
        clock: Clock | None = None,
        interval: float = 60.0,
        max_signs: int = 1000,
    ) -> None:
        self.raise_alert = raise_alert
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.max_signs = max_signs
        self._signs: list[OutageSign] = []
        self._first_ts: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.seen = 0
        self.alerts = 0

    def lines(self, texts: list[str]) -> None:
        """A batch of followed log lines: one joined scan for the two markers (in C), and the
        per-line match only when a marker is present."""
        blob = "\n".join(texts)
        if "problem talking to server" in blob or "Policy server" in blob:
            for text in texts:
                self.line(text)

    def line(self, text: str) -> None:
        sign = match_outage(text)
        if sign is None:
            return
        self.seen += 1
        if self._first_ts is None:
            self._first_ts = self.clock.now()
        if len(self._signs) < self.max_signs:
            self._signs.append(sign)
        else:
            self._signs[-1] = sign  # keep the latest detail; counts stay in ``seen``
        self._wake.set()

    def flush(self) -> Alert | None:
        """Raise one alert for the signs gathered so far (None when there are none)."""
        if not self._signs:
            return None
        first = self._first_ts if self._first_ts is not None else self.clock.now()
        alert = log_outage_alert(self._signs, first, self.clock.now())
        self._signs = []
        self._first_ts = None
        if alert is not None:
            self.alerts += 1
            self.raise_alert(alert)
        return alert

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("policy outage: cannot raise the alert")
            await asyncio.sleep(self.interval)

    async def start(self, daemon: Any) -> None:
        daemon.watch_lines(self.lines)
        self.clock = getattr(daemon, "clock", None) or self.clock
        self._task = spawn(self._loop(), name="policy-outage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.flush()

    def status(self) -> dict[str, int]:
        return {"lines": self.seen, "alerts": self.alerts, "pending": len(self._signs)}
