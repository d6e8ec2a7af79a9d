"""Count each login once when it reaches the detectors twice: as a Dovecot auth-policy ``report``
(real time) and again from Dovecot's or Postfix's log lines (later). Pure and bounded: whichever
side arrives first passes and leaves a credit keyed (kind, IP, username); the other side's event
with the same key within ``window`` seconds consumes it and is dropped.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from ipaddress import IPv6Address

from mailward.events import AuthFailure, AuthSuccess, Event

REPORT_SOURCE = "dovecot-policy"  # Origin.source of events fed by policy/dovecot_rules.py
WINDOW = 60.0  # seconds between a report and the log line of the same attempt
LAG = 300.0  # how long a credit waits for a lagging log (the daemon's live window)
MAX_CREDITS = 200_000  # beyond this the oldest credits are forgotten (bounded memory)

# (success?, IPv6?, address as int, username lowercased): plain ints and str hash and compare
# in C, several times faster than ipaddress objects (whose __hash__/__eq__ are Python code).
_Key = tuple[bool, bool, int, str]


class ReportDedupe:
    """``admit(events, now)`` returns the events the detectors should see. Reports are told
    apart from log events by ``origin.source``. Only reports and log lines match each other:
    two reports, or two log lines, are two attempts."""

    def __init__(
        self,
        *,
        window: float = WINDOW,
        lag: float = LAG,
        max_credits: int = MAX_CREDITS,
        report_source: str = REPORT_SOURCE,
    ) -> None:
        self.window = window
        self.keep = window + lag
        self.max_credits = max_credits
        self.report_source = report_source
        # Per side (True: left by reports, for log events; False: left by log events, for
        # reports): key -> event times, plus an arrival-ordered deque for expiry and the bound.
        self._credits: dict[bool, dict[_Key, deque[float]]] = {True: {}, False: {}}
        self._order: dict[bool, deque[tuple[float, _Key]]] = {True: deque(), False: deque()}
        self.dropped = 0  # attempts not passed on (counted by the other side)
        self.expired = 0  # credits never matched

    def admit(self, events: Iterable[Event], now: float) -> list[Event]:
        self._expire(now)
        out: list[Event] = []
        for event in events:
            kept = self._one(event)
            if kept is not None:
                out.append(kept)
        return out

    def _one(self, event: Event) -> Event | None:
        kind = type(event)
        if (kind is not AuthFailure and kind is not AuthSuccess) or event.ip is None:
            return event
        assert isinstance(event, (AuthFailure, AuthSuccess))  # noqa: UP038 (a tuple is faster)
        report = event.origin is not None and event.origin.source == self.report_source
        ip = event.ip
        key: _Key = (
            kind is AuthSuccess,
            type(ip) is IPv6Address,
            int(ip),
            (event.username or "").lower(),
        )
        attempts = event.attempts if kind is AuthFailure else 1  # type: ignore[union-attr]
        # Consume what the other side left.
        other = self._credits[not report].get(key)
        used = 0
        while other and used < attempts:
            if abs(other[0] - event.ts) <= self.window:
                other.popleft()
                used += 1
            elif other[0] < event.ts - self.window:
                other.popleft()  # too old to be this attempt's partner
                self.expired += 1
            else:
                break  # the credit is younger than this event's window: keep it
        if other is not None and not other:
            del self._credits[not report][key]
        self.dropped += used
        if used == attempts:
            return None
        # Leave a credit for each attempt that passes, for the other side to consume.
        side = self._credits[report]
        mine = side.get(key)
        if mine is None:
            mine = side[key] = deque()
        order = self._order[report]
        for _ in range(attempts - used):
            mine.append(event.ts)
            order.append((event.ts, key))
        while len(order) > self.max_credits:
            self._forget(report, *order.popleft())
        if used and isinstance(event, AuthFailure):
            return dataclasses.replace(event, attempts=attempts - used)
        return event

    def _expire(self, now: float) -> None:
        for side, order in self._order.items():
            while order and order[0][0] < now - self.keep:
                self._forget(side, *order.popleft())

    def _forget(self, side: bool, ts: float, key: _Key) -> None:
        credits = self._credits[side].get(key)
        if not credits:
            return  # already consumed
        if credits[0] <= ts:
            credits.popleft()
            self.expired += 1
        if not credits:
            del self._credits[side][key]

    @property
    def pending(self) -> int:
        return sum(len(q) for side in self._credits.values() for q in side.values())

    def status(self) -> dict[str, int]:
        return {"dropped": self.dropped, "expired": self.expired, "pending": self.pending}
