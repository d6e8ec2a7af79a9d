"""Detector state behind a few explicit operations, so a Redis twin can replace the in-process one.

Three kinds of state, each addressed by ``(space, key)``: windowed counters (the newest ``cap``
event times per key), distinct members in a window (member -> last seen, at most ``cap``), and a
key -> expiry map (marks). Nothing is kept past its window: every write files the key under the
minute its state runs out, and ``sweep(now)`` drops what is due, at a cost proportional to it.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import chain
from typing import Final, cast

Key = int | str
"""Addresses and prefixes are ints (see ``detectors.keys``), usernames and ASNs strings/ints."""

_BUCKET: Final = 60.0
_SMALL: Final = 8  # distinct sets up to this size live in a flat tuple, not a dict
_STRUCTS: Final[dict[int, struct.Struct]] = {}


def _codec(n: int) -> struct.Struct:
    codec = _STRUCTS.get(n)
    if codec is None:
        codec = _STRUCTS[n] = struct.Struct(f"<{n}I")
    return codec


def _unpack(packed: bytes) -> tuple[int, ...]:
    return _codec(len(packed) // 4).unpack(packed)


def _pack(times: list[int]) -> bytes:
    return _codec(len(times)).pack(*times)


class StateStore(ABC):
    """The state the detectors need. Redis mapping (docs/detectors.md): counters are ZSETs of
    event times trimmed by rank and score, distinct sets ZSETs of member -> last seen, marks one
    ZSET per space scored by expiry (``ZADD GT``); every key has a TTL of its window.

    An abstract class rather than a Protocol: compiled, a call through a native base class is a
    vtable call, through a Protocol a generic Python call that parses its keywords each time."""

    @abstractmethod
    def hit(self, space: str, key: Key, now: float, *, window: float, cap: int, n: int = 1) -> int:
        """Record ``n`` events at ``now``; return how many fall within ``window`` (at most ``cap``:
        only the newest ``cap`` times are kept, enough to answer 'at least cap?')."""
        ...

    @abstractmethod
    def count(self, space: str, key: Key, now: float, window: float) -> int:
        """Recorded events within ``window`` before ``now`` (at most the ``cap`` of the writes)."""
        ...

    @abstractmethod
    def counts(self, space: str, key: Key, now: float, windows: Sequence[float]) -> list[int]:
        """``count`` for several windows in one read."""
        ...

    @abstractmethod
    def add_member(
        self, space: str, key: Key, member: Key, now: float, *, window: float, cap: int
    ) -> int:
        """Note ``member`` as seen at ``now``; return the distinct members seen within ``window``
        (at most ``cap``; the member seen longest ago is dropped first)."""
        ...

    @abstractmethod
    def has_member(self, space: str, key: Key, member: Key, now: float, window: float) -> bool:
        """Whether ``member`` was seen under ``key`` within ``window``."""
        ...

    @abstractmethod
    def mark(self, space: str, key: Key, until: float) -> float:
        """Set the expiry of ``key`` to ``until`` unless it is already later; return the expiry."""
        ...

    @abstractmethod
    def marked(self, space: str, key: Key, now: float) -> float | None:
        """The expiry of ``key`` if it is still in the future, else None."""
        ...

    @abstractmethod
    def unmark(self, space: str, key: Key) -> None: ...

    @abstractmethod
    def reset(self, space: str, key: Key) -> None:
        """Forget the counter or distinct set of ``key``."""
        ...

    @abstractmethod
    def sweep(self, now: float) -> int:
        """Drop state whose window or expiry has passed; return how many keys went."""
        ...


class MemoryState(StateStore):
    """In-process ``StateStore``. Compact on purpose (a botnet means a million keys): a counter
    is one ``bytes`` of packed 32-bit deciseconds since the store's epoch (12 bytes for three
    events), a small distinct set a flat tuple ``(m1, t1, m2, t2…)``, and the expiry index holds
    only references to keys that exist anyway."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[Key, bytes]] = {}
        self._sets: dict[str, dict[Key, tuple[Key | float, ...] | dict[Key, float]]] = {}
        self._marks: dict[str, dict[Key, float]] = {}
        self._windows: dict[tuple[str, str], float] = {}
        # (kind, space) -> minute bucket -> keys whose state may run out in that minute
        self._due: dict[tuple[str, str], dict[int, list[Key]]] = {}
        self._epoch: float | None = None

    # -- counters ---------------------------------------------------------------------------

    def _ds(self, t: float) -> int:
        """``t`` as deciseconds since the epoch, clamped into 32 bits."""
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = float(int(t) - 1)
        return min(max(0, int((t - epoch) * 10)), 0xFFFFFFFF)

    def _last(self, packed: bytes) -> float:
        assert self._epoch is not None
        return self._epoch + int.from_bytes(packed[-4:], "little") / 10

    def hit(self, space: str, key: Key, now: float, *, window: float, cap: int, n: int = 1) -> int:
        table = self._counters.get(space)
        if table is None:
            table = self._counters[space] = {}
            self._windows["c", space] = window
        old = table.get(key)
        now_ds = self._ds(now)
        horizon = now_ds - int(window * 10)
        times: list[int] = []
        if old is not None:
            times = [t for t in _unpack(old) if t > horizon]
        times.extend([now_ds] * max(0, min(n, cap)))
        if len(times) > cap:
            times = times[-cap:]
        if not times:
            table.pop(key, None)
            return 0
        table[key] = _pack(times)
        if old is None:
            self._file("c", space, key, now + window)
        return len(times)

    def count(self, space: str, key: Key, now: float, window: float) -> int:
        table = self._counters.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return 0
        horizon = self._ds(now) - int(window * 10)
        return sum(1 for t in _unpack(old) if t > horizon)

    def counts(self, space: str, key: Key, now: float, windows: Sequence[float]) -> list[int]:
        table = self._counters.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return [0] * len(windows)
        now_ds = self._ds(now)
        times = _unpack(old)
        return [sum(1 for t in times if t > now_ds - int(w * 10)) for w in windows]

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
        if old is None:
            table[key] = (member, now)
            size = 1
        elif isinstance(old, tuple):
            # One pass over the flat pairs (no slices, no unpacking into a new display: this
            # runs twice per successful login, and compiled those cost 2 µs a call).
            n = len(old)
            size = n >> 1
            live = True
            pos = -1
            for i in range(0, n, 2):
                # cast, not float(): compiled, float() of a union is a generic call per item
                if cast(float, old[i + 1]) <= horizon:
                    live = False
                if pos < 0 and old[i] == member:
                    pos = i
            if live and pos < 0 and size < cap and size < _SMALL:
                # the common case: a new member, nothing to drop
                table[key] = old + (member, now)
                size += 1
            elif live and pos < 0 and size == cap:
                # full (a username under attack): the new member pushes out the oldest
                table[key] = old[2:] + (member, now)
            elif live and pos == n - 2 and size <= cap:
                # the newest again: only its time moves
                table[key] = old[: n - 1] + (now,)
            elif live and pos >= 0 and size <= cap:
                # a repeat: it moves to the end
                table[key] = old[:pos] + old[pos + 2 :] + (member, now)
            else:
                kept: list[tuple[Key, float]] = [
                    (old[i], cast(float, old[i + 1]))  # type: ignore[misc]
                    for i in range(0, n, 2)
                    if old[i] != member and cast(float, old[i + 1]) > horizon
                ]
                kept.append((member, now))
                if len(kept) > cap:
                    kept = kept[len(kept) - cap :]
                size = len(kept)
                if size <= _SMALL:
                    table[key] = tuple(chain.from_iterable(kept))
                else:
                    table[key] = dict(kept)
        else:
            members = old
            if member in members:  # ``in`` and ``del``: C calls, ``pop`` a generic method call
                del members[member]
            members[member] = now
            # Insertion order is time order: the oldest sit at the front. Drop from the front
            # while over the cap or out of the window (a native loop over the items: mypyc
            # calls next(iter(...)) generically).
            excess = len(members) - cap
            stale: list[Key] | None = None
            for first, seen in members.items():
                if excess <= 0 and seen > horizon:
                    break
                if stale is None:
                    stale = []
                stale.append(first)
                excess -= 1
            if stale is not None:
                for first in stale:
                    del members[first]
            size = len(members)
        if old is None:  # a new key: filed once, when it appears
            self._file("s", space, key, now + window)
        return size

    def has_member(self, space: str, key: Key, member: Key, now: float, window: float) -> bool:
        table = self._sets.get(space)
        old = None if table is None else table.get(key)
        if old is None:
            return False
        if isinstance(old, tuple):
            for i in range(0, len(old), 2):
                if old[i] == member:
                    return cast(float, old[i + 1]) > now - window
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
            return sum(1 for i in range(1, len(old), 2) if cast(float, old[i]) > horizon)
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
        if old is None:
            self._file("m", space, key, until)
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

    def _file(self, kind: str, space: str, key: Key, ends: float) -> None:
        # A key is filed once, when it appears, under the minute its state would run out; the
        # sweep re-files it if it was extended since. The list holds the very key object the
        # table holds, so the index costs one pointer per key.
        bucket = int(ends // _BUCKET) + 1
        buckets = self._due.get((kind, space))
        if buckets is None:
            buckets = self._due[kind, space] = {}
        due = buckets.get(bucket)
        if due is None:
            due = buckets[bucket] = []
        due.append(key)

    def sweep(self, now: float) -> int:
        dropped = 0
        current = int(now // _BUCKET)
        for (kind, space), buckets in self._due.items():
            for bucket in sorted(b for b in buckets if b <= current):
                keys = buckets.pop(bucket)
                for key in keys:
                    ends = self._ends(kind, space, key)
                    if ends is None:
                        continue  # reset or unmarked meanwhile
                    if ends <= now:
                        self._drop(kind, space, key)
                        dropped += 1
                    else:
                        self._file(kind, space, key, ends)
        return dropped

    def _ends(self, kind: str, space: str, key: Key) -> float | None:
        """When the state of ``key`` runs out, or None if there is none."""
        if kind == "m":
            return self._marks[space].get(key)
        if kind == "c":
            packed = self._counters[space].get(key)
            return None if packed is None else self._last(packed) + self._windows["c", space]
        members = self._sets[space].get(key)
        if members is None:
            return None
        if isinstance(members, tuple):
            last = cast(float, members[-1])
        else:
            last = next(reversed(members.values()))
        return last + self._windows["s", space]

    def _drop(self, kind: str, space: str, key: Key) -> None:
        if kind == "m":
            del self._marks[space][key]
        elif kind == "c":
            del self._counters[space][key]
        else:
            del self._sets[space][key]

    def sizes(self) -> dict[str, int]:
        """Keys held per space (for status and benchmarks)."""
        out: dict[str, int] = {}
        for prefix, tables in (("c:", self._counters), ("s:", self._sets), ("m:", self._marks)):
            for space, table in tables.items():
                out[prefix + space] = len(table)
        return out
