"""The clock is injected: detectors take ``now`` as an argument, the daemon passes ``Clock.now()``.

Replay passes the logs' own timestamps instead, so a month of history is a loop, not a sleep.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

_time: Final = time.time  # compiled: a static, not a module attribute lookup per call


class Clock(Protocol):
    def now(self) -> float:
        """POSIX seconds, UTC."""
        ...


class SystemClock:
    def now(self) -> float:
        return _time()


class ManualClock:
    """A clock tests and replay move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
