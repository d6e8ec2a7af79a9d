"""Self-monitoring rules: a source falling behind, a busy source gone quiet, a task that crashed.

Pure like the attack rules: ``check(statuses, now)`` gets ``daemon.sources_status()`` and returns
alerts; ``crashed(name, exc, now)`` is wired to the task supervisor's ``on_crash`` hook. Each
problem alerts once, and once more ("recovered") when it clears, so a human knows it is over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import Protocol

from mailward.config.model import AlertSettings
from mailward.notify.model import Alert, Severity, iso

BUSY_MIN_ADVANCES = 10  # a source that advanced fewer times than this in a day is not "busy"


class SourceStatusLike(Protocol):
    """The fields of ``mailward.daemon.app.SourceStatus`` the monitors read."""

    @property
    def name(self) -> str: ...
    @property
    def newest_line_ts(self) -> float | None: ...
    @property
    def processed_ts(self) -> float | None: ...
    @property
    def lag_seconds(self) -> float | None: ...
    @property
    def unread_bytes(self) -> int | None: ...
    @property
    def last_error(self) -> str | None: ...


@dataclass
class _Source:
    last_newest: float | None = None
    advances: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    lagging_since: float | None = None


class HealthRules:
    def __init__(self, settings: AlertSettings) -> None:
        self.s = settings
        self._sources: dict[str, _Source] = {}
        self._active: set[str] = set()
        self._crashes: dict[str, deque[float]] = {}

    @property
    def problems(self) -> list[str]:
        """Keys of the problems now open (``source_lag:NAME``, ``source_silent:NAME``)."""
        return sorted(self._active)

    def check(self, statuses: Iterable[SourceStatusLike], now: float) -> list[Alert]:
        out: list[Alert] = []
        for st in statuses:
            src = self._sources.setdefault(st.name, _Source())
            if st.newest_line_ts is not None and st.newest_line_ts != src.last_newest:
                if src.last_newest is not None:
                    src.advances.append(st.newest_line_ts)
                src.last_newest = st.newest_line_ts
            out.extend(self._lag(st, now))
            out.extend(self._silence(st, src, now))
        return out

    def _transition(self, key: str, bad: bool) -> bool | None:
        """True when a problem starts, False when it clears, None when nothing changed."""
        if bad and key not in self._active:
            self._active.add(key)
            return True
        if not bad and key in self._active:
            self._active.discard(key)
            return False
        return None

    def _lag(self, st: SourceStatusLike, now: float) -> list[Alert]:
        limit = self.s.source_lag_seconds
        lag = st.lag_seconds or 0.0
        unread = st.unread_bytes or 0
        change = self._transition(f"source_lag:{st.name}", lag > limit)
        if change is None:
            return []
        processed = iso(st.processed_ts) if st.processed_ts else "nothing yet"
        newest = iso(st.newest_line_ts) if st.newest_line_ts else "unknown"
        if change:
            return [
                Alert(
                    ts=now,
                    kind="source_lag",
                    key=f"source_lag:{st.name}",
                    severity=Severity.CRITICAL,
                    title=f"mailward is {lag:.0f} s behind on source {st.name}",
                    details=(
                        f"Newest line processed: {newest} (at {processed}); {lag:.0f} s behind "
                        f"(threshold {limit:.0f} s), {unread} bytes unread.",
                        f"Last error: {st.last_error}." if st.last_error else "No error reported.",
                        "Attacks in this log are NOT being detected or banned until it catches "
                        "up. Check `mailward status` and `journalctl -u mailward`.",
                    ),
                    facts={
                        "source": st.name,
                        "lag_seconds": lag,
                        "unread_bytes": unread,
                    },
                )
            ]
        return [
            Alert(
                ts=now,
                kind="source_recovered",
                key=f"source_recovered:{st.name}",
                severity=Severity.WARNING,
                title=f"Source {st.name} caught up (lag {lag:.0f} s)",
                details=(f"Processing of {st.name} is within {limit:.0f} s again.",),
                facts={"source": st.name, "lag_seconds": lag},
            )
        ]

    def _silence(self, st: SourceStatusLike, src: _Source, now: float) -> list[Alert]:
        day = [t for t in src.advances if t >= now - 86400]
        busy = len(day) >= BUSY_MIN_ADVANCES
        gaps = [b - a for a, b in zip(day, day[1:], strict=False)]
        typical = median(gaps) if gaps else 0.0
        quiet_for = now - src.last_newest if src.last_newest is not None else 0.0
        limit = max(self.s.source_silence_seconds, 10 * typical)
        # A source with unread bytes is lagging, not silent: the lag alert covers it.
        silent = busy and quiet_for > limit and not st.unread_bytes
        change = self._transition(f"source_silent:{st.name}", silent)
        if change is None:
            return []
        if change:
            return [
                Alert(
                    ts=now,
                    kind="source_silent",
                    key=f"source_silent:{st.name}",
                    severity=Severity.HIGH,
                    title=f"Source {st.name} has been silent for {quiet_for / 60:.0f} minutes",
                    details=(
                        f"No new line since {iso(now - quiet_for)}; it usually writes one every "
                        f"{typical:.0f} s ({len(day)} updates in the last day).",
                        "Is the mail server (or its logging) still running? Has the log moved?",
                    ),
                    facts={"source": st.name, "quiet_seconds": quiet_for},
                )
            ]
        return []

    def crashed(self, name: str, exc: BaseException, now: float) -> list[Alert]:
        if not self.s.task_crash_alert:
            return []
        stamps = self._crashes.setdefault(name, deque(maxlen=1000))
        stamps.append(now)
        recent = sum(1 for t in stamps if t >= now - 3600)
        return [
            Alert(
                ts=now,
                kind="task_crashed",
                key=f"task_crashed:{name}",
                severity=Severity.CRITICAL if recent >= 3 else Severity.HIGH,
                title=f"mailward task {name!r} crashed and was restarted "
                f"({recent} time{'s' if recent != 1 else ''} in the last hour)",
                details=(
                    f"{type(exc).__name__}: {exc}",
                    "The supervisor restarted it. Repeated crashes mean part of the defence is "
                    "not working: see `journalctl -u mailward` for the traceback.",
                ),
                facts={"task": name, "error": f"{type(exc).__name__}: {exc}", "last_hour": recent},
            )
        ]
