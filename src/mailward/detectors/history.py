"""Offender history for escalation: how often a target was banned before, over at least a year.

``MemoryHistory`` keeps the times of offences in process. ``StoreHistory`` adds what a persistent
store knew before this process started (``SqliteStore.offences(target, since)`` fits the small
``OffenceSource`` protocol), asked once per target, so a restart does not reset escalation.
"""

from __future__ import annotations

import socket
from typing import Protocol

_MAX_KEPT = 32  # beyond this many offences the ban is capped anyway


class OffenceSource(Protocol):
    def offences(self, target: str, since: float) -> int:
        """Bans recorded for ``target`` at or after ``since``."""
        ...


class OffenderHistory(Protocol):
    def offences(self, target: str, since: float) -> int:
        """Offences of ``target`` at or after ``since``."""
        ...

    def record(self, target: str, ts: float) -> None:
        """Note one offence of ``target`` at ``ts``."""
        ...


def _key(target: str) -> int | str:
    # Most targets are IPv4 addresses: as an int the key costs half the string. inet_pton is
    # strict dotted-quad (no leading zeros, no short forms), as ``IPv4Address`` is, and ~8x faster.
    if "/" not in target and ":" not in target:
        try:
            return int.from_bytes(socket.inet_pton(socket.AF_INET, target), "big")
        except (OSError, ValueError):  # not an address; NUL or unencodable text
            pass
    return target


class MemoryHistory:
    """Offence times per target, kept for ``keep`` seconds (default 400 days)."""

    def __init__(self, keep: float = 400 * 86400.0) -> None:
        self.keep = keep
        self._times: dict[int | str, float | tuple[float, ...]] = {}

    def __len__(self) -> int:
        return len(self._times)

    def offences(self, target: str, since: float) -> int:
        times = self._times.get(_key(target))
        if times is None:
            return 0
        if isinstance(times, float):
            return 1 if times >= since else 0
        return sum(1 for t in times if t >= since)

    def record(self, target: str, ts: float) -> None:
        key = _key(target)
        old = self._times.get(key)
        horizon = ts - self.keep
        if old is None:
            self._times[key] = ts
            return
        times = (old,) if isinstance(old, float) else old
        kept = tuple(t for t in times if t >= horizon) + (ts,)
        self._times[key] = kept[-_MAX_KEPT:]

    def sweep(self, now: float) -> int:
        """Forget targets whose newest offence is older than ``keep``."""
        horizon = now - self.keep
        stale = [
            k for k, v in self._times.items() if (v if isinstance(v, float) else v[-1]) < horizon
        ]
        for k in stale:
            del self._times[k]
        return len(stale)


class StoreHistory:
    """Memory history plus the store's count from before this process, fetched once per target
    (the first time it offends here, before any of this process's decisions can be in the store)."""

    def __init__(
        self, source: OffenceSource, *, keep: float = 400 * 86400.0, cache_size: int = 200_000
    ) -> None:
        self.source = source
        self.memory = MemoryHistory(keep)
        self._prior: dict[str, int] = {}
        self._cache_size = cache_size

    def offences(self, target: str, since: float) -> int:
        prior = self._prior.get(target)
        if prior is None:
            prior = self.source.offences(target, since)
            if len(self._prior) >= self._cache_size:
                self._prior.clear()  # rare; re-asking the store is only slower
            self._prior[target] = prior
        return prior + self.memory.offences(target, since)

    def record(self, target: str, ts: float) -> None:
        if target not in self._prior:
            self.offences(target, ts - self.memory.keep)
        self.memory.record(target, ts)
