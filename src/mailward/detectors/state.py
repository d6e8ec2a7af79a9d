"""Detector state behind a few explicit operations, so a Redis twin can replace the in-process one.

Three kinds of state, each addressed by ``(space, key)``: windowed counters (the newest ``cap``
event times per key), distinct members in a window (member -> last seen, at most ``cap``), and a
key -> expiry map (marks). Nothing is kept past its window: every write files the key under the
minute its state runs out, and ``sweep(now)`` drops what is due, at a cost proportional to it.
"""

from __future__ import annotations

from typing import Protocol

Key = int | str
"""Addresses and prefixes are ints (see ``detectors.keys``), usernames and ASNs strings/ints."""

_BUCKET = 60.0
_SMALL = 8  # distinct sets up to this size live in a flat tuple, not a dict


class StateStore(Protocol):
    """The state the detectors need. Redis mapping (docs/detectors.md): counters are ZSETs of
    event times trimmed by rank and score, distinct sets ZSETs of member -> last seen, marks one
    ZSET per space scored by expiry (``ZADD GT``); every key has a TTL of its window."""

    def hit(self, space: str, key: Key, now: float, *, window: float, cap: int, n: int = 1) -> int:
        """Record ``n`` events at ``now``; return how many fall within ``window`` (at most ``cap``:
        only the newest ``cap`` times are kept, enough to answer 'at least cap?')."""
        ...

    def count(self, space: str, key: Key, now: float, window: float) -> int:
        """Recorded events within ``window`` before ``now`` (at most the ``cap`` of the writes)."""
        ...

    def add_member(
        self, space: str, key: Key, member: Key, now: float, *, window: float, cap: int
    ) -> int:
        """Note ``member`` as seen at ``now``; return the distinct members seen within ``window``
        (at most ``cap``; the member seen longest ago is dropped first)."""
        ...

    def has_member(self, space: str, key: Key, member: Key, now: float, window: float) -> bool:
        """Whether ``member`` was seen under ``key`` within ``window``."""
        ...

    def mark(self, space: str, key: Key, until: float) -> float:
        """Set the expiry of ``key`` to ``until`` unless it is already later; return the expiry."""
        ...

    def marked(self, space: str, key: Key, now: float) -> float | None:
        """The expiry of ``key`` if it is still in the future, else None."""
        ...

    def unmark(self, space: str, key: Key) -> None: ...

    def reset(self, space: str, key: Key) -> None:
        """Forget the counter or distinct set of ``key``."""
        ...

    def sweep(self, now: float) -> int:
        """Drop state whose window or expiry has passed; return how many keys went."""
        ...


class MemoryState:
    """In-process ``StateStore``. Compact on purpose (a botnet means a million keys): a counter
    is one float or a tuple of floats, a small distinct set a flat tuple ``(m1, t1, m2, t2…)``."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[Key, float | tuple[float, ...]]] = {}
        self._sets: dict[str, dict[Key, tuple[Key | float, ...] | dict[Key, float]]] = {}
        self._marks: dict[str, dict[Key, float]] = {}
        self._windows: dict[tuple[str, str], float] = {}
        # minute bucket -> (kind, space, key) whose state may run out in that minute
        self._due: dict[int, list[tuple[str, str, Key]]] = {}

    # -- counters ---------------------------------------------------------------------------

    def hit(self, space: str, key: Key, now: float, *, window: float, cap: int, n: int = 1) -> int:
        now = float(now)  # the compact forms tell a single time from a tuple by its type
        table = self._counters.get(space)
        if table is None:
            table = self._counters[space] = {}
            self._windows["c", space] = window
        old = table.get(key)
        horizon = now - window
        if old is None:
            times: tuple[float, ...] = ()
        elif isinstance(old, float):
            times = (old,) if old > horizon else ()
        else:
            times = tuple(t for t in old if t > horizon)
        times = (times + (now,) * max(0, min(n, cap)))[-cap:]
        if not times:
            table.pop(key, None)
            return 0
        table[key] = times[0] if len(times) == 1 else times
        prev_last = old if isinstance(old, float) else (old[-1] if old else None)
        self._file("c", space, key, now + window, None if prev_last is None else prev_last + window)
        return len(times)

    def count(self, space: str, key: Key, now: float, window: float) -> int:
        table = self._counters.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return 0
        horizon = now - window
        if isinstance(old, float):
            return 1 if old > horizon else 0
        return sum(1 for t in old if t > horizon)

    # -- distinct members -------------------------------------------------------------------

    def add_member(
        self, space: str, key: Key, member: Key, now: float, *, window: float, cap: int
    ) -> int:
        now = float(now)
        table = self._sets.get(space)
        if table is None:
            table = self._sets[space] = {}
            self._windows["s", space] = window
        horizon = now - window
        old = table.get(key)
        prev_last: float | None = None
        if old is None or isinstance(old, tuple):
            flat: tuple[Key | float, ...] = old or ()
            if flat:
                prev_last = float(flat[-1])
            pairs = [
                (flat[i], flat[i + 1])
                for i in range(0, len(flat), 2)
                if flat[i] != member and float(flat[i + 1]) > horizon
            ]
            pairs.append((member, now))
            if len(pairs) > cap:
                pairs = pairs[-cap:]
            if len(pairs) <= _SMALL:
                table[key] = tuple(x for pair in pairs for x in pair)
            else:
                table[key] = {m: float(t) for m, t in pairs}  # type: ignore[misc]
            size = len(pairs)
        else:
            members = old
            prev_last = next(reversed(members.values()), None)
            members.pop(member, None)
            members[member] = now
            # insertion order is time order: the oldest sit at the front
            while members:
                first = next(iter(members))
                if members[first] > horizon and len(members) <= cap:
                    break
                del members[first]
            size = len(members)
        self._file("s", space, key, now + window, None if prev_last is None else prev_last + window)
        return size

    def has_member(self, space: str, key: Key, member: Key, now: float, window: float) -> bool:
        table = self._sets.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return False
        if isinstance(old, tuple):
            for i in range(0, len(old), 2):
                if old[i] == member:
                    return float(old[i + 1]) > now - window
            return False
        seen = old.get(member)
        return seen is not None and seen > now - window

    def distinct(self, space: str, key: Key, now: float, window: float) -> int:
        """Distinct members within ``window`` (a read-only helper, not part of the protocol)."""
        table = self._sets.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return 0
        horizon = now - window
        if isinstance(old, tuple):
            return sum(1 for i in range(1, len(old), 2) if float(old[i]) > horizon)
        return sum(1 for t in old.values() if t > horizon)

    # -- marks ------------------------------------------------------------------------------

    def mark(self, space: str, key: Key, until: float) -> float:
        table = self._marks.get(space)
        if table is None:
            table = self._marks[space] = {}
        old = table.get(key)
        if old is not None and old >= until:
            return old
        table[key] = until
        self._file("m", space, key, until, old)
        return until

    def marked(self, space: str, key: Key, now: float) -> float | None:
        table = self._marks.get(space)
        until = None if table is None else table.get(key)
        return until if until is not None and until > now else None

    def unmark(self, space: str, key: Key) -> None:
        table = self._marks.get(space)
        if table is not None:
            table.pop(key, None)

    def reset(self, space: str, key: Key) -> None:
        for tables in (self._counters, self._sets):
            table = tables.get(space)
            if table is not None:
                table.pop(key, None)

    # -- expiry -----------------------------------------------------------------------------

    def _file(self, kind: str, space: str, key: Key, ends: float, prev_ends: float | None) -> None:
        bucket = int(ends // _BUCKET) + 1
        if prev_ends is not None and int(prev_ends // _BUCKET) + 1 == bucket:
            return  # already filed under this minute
        due = self._due.get(bucket)
        if due is None:
            due = self._due[bucket] = []
        due.append((kind, space, key))

    def sweep(self, now: float) -> int:
        dropped = 0
        current = int(now // _BUCKET)
        for bucket in sorted(b for b in self._due if b <= current):
            for kind, space, key in self._due.pop(bucket):
                if kind == "m":
                    marks = self._marks.get(space)
                    until = None if marks is None else marks.get(key)
                    if marks is not None and until is not None and until <= now:
                        del marks[key]
                        dropped += 1
                    continue
                window = self._windows[kind, space]
                if kind == "c":
                    counters = self._counters[space]
                    value = counters.get(key)
                    if value is None:
                        continue
                    last = value if isinstance(value, float) else value[-1]
                    if last + window <= now:
                        del counters[key]
                        dropped += 1
                else:
                    sets = self._sets[space]
                    members = sets.get(key)
                    if members is None:
                        continue
                    if isinstance(members, tuple):
                        last = float(members[-1])
                    else:
                        last = next(reversed(members.values()))
                    if last + window <= now:
                        del sets[key]
                        dropped += 1
        return dropped

    def sizes(self) -> dict[str, int]:
        """Keys held per space (for status and benchmarks)."""
        out: dict[str, int] = {}
        for prefix, tables in (("c:", self._counters), ("s:", self._sets), ("m:", self._marks)):
            for space, table in tables.items():
                out[prefix + space] = len(table)
        return out
