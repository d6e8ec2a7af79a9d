"""Sans-IO counters the policy servers keep themselves: distinct values per key in a sliding
window, and open connections per client. Memory is bounded (oldest keys evicted first), every
operation takes ``now``, nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network
from socket import AF_INET, inet_pton
from typing import Final, cast

from mailward.events import IPV6_KEY_FLAG, IPAddress, ip_key, normalise_ip

_KEY_CACHE_MAX: Final = 65536
_KEY_CACHE: Final[dict[str, int]] = {}


def _c_ipv4() -> Callable[[str], int] | None:
    try:
        from mailward.policy._scan import ipv4
    except ImportError:  # a build without the C scanner: every address goes through the cache
        return None
    return ipv4


# Final: compiled, the names read per request are C statics, not module-dict lookups
_ipv4: Final = _c_ipv4()


def parse_key(text: str) -> int:
    """``ip_key`` of an address's text: a dotted quad read by the C scanner's ``ipv4`` when
    it is built (no lookup in a large table, no bytes, no address object); anything else
    through a bounded cache of plain ints, which the collector stops scanning (it would scan
    every cached address object on each full pass). Raises ValueError like ``normalise_ip``."""
    if _ipv4 is not None:
        value = _ipv4(text)
        if value >= 0:
            return value
    key = _KEY_CACHE.get(text)
    if key is None:
        key = ip_key(normalise_ip(text))
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[text] = key
    return key


def read_ip(text: str) -> IPAddress:
    """An address object from its text (strict, as ``parse_key``): for the rare callers that
    need the object itself, not its key."""
    try:
        # inet_pton is strict (no "1.2", no leading zeros) and ~10x faster than ipaddress.
        return IPv4Address(inet_pton(AF_INET, text))
    except OSError:
        return normalise_ip(text)


def prefix_of(ip: IPAddress, v4: int, v6: int) -> IPv4Network | IPv6Network:
    """The netblock an address is aggregated into (``/24`` and ``/64`` by default)."""
    return ip_network(f"{ip}/{v4 if ip.version == 4 else v6}", strict=False)


_SMALL: Final = 8  # distinct values kept in a flat tuple up to this many, in a dict beyond


class DistinctWindow:
    """How many distinct values each key saw within the last ``window`` seconds.

    ``add`` returns (count, new) so callers can both threshold and tell a repeat (a stale client
    retrying one old password) from a fresh value. At most ``max_keys`` keys are kept, the least
    recently used evicted first.

    Compact on purpose, like the detectors' state: up to ``_SMALL`` values per key live in one
    flat tuple ``(v1, t1, v2, t2, ...)`` in last-seen order, which the cyclic collector stops
    tracking after a pass or two; a dict per key (last-seen order too) only beyond. A dict per
    key stays tracked for good, and a botnet means one key per address.
    """

    __slots__ = ("window", "max_keys", "_data")

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        # Plain dicts, kept in last-used order by re-inserting: compiled, their loops and
        # lookups are C calls, where an OrderedDict's are generic method calls.
        self._data: dict[Hashable, tuple[Hashable | float, ...] | dict[Hashable, float]] = {}

    def add(self, key: Hashable, value: Hashable, now: float) -> tuple[int, bool]:
        now = float(now)
        data = self._data
        old = data.get(key)
        if old is None:
            if len(data) >= self.max_keys:
                del data[next(iter(data))]
            data[key] = (value, now)
            return 1, True
        # Re-inserted below: dict order is our LRU order. (``get`` and ``del``, not ``pop``:
        # compiled, those two are C calls, ``pop`` with a default a generic method call.)
        del data[key]
        horizon = now - self.window
        if isinstance(old, tuple):
            # One pass: where ``value`` is, and whether anything ran out of the window.
            n = len(old)
            stale = 0
            pos = -1
            for i in range(0, n, 2):
                # cast, not float(): compiled, float() of a union is a generic call per item
                if cast(float, old[i + 1]) < horizon:
                    stale += 1
                elif pos < 0 and old[i] == value:
                    pos = i
            if not stale and pos == n - 2:
                data[key] = old[: n - 1] + (now,)  # the newest again: only its time moves
                return n >> 1, False
            if stale:
                kept = tuple(
                    item
                    for i in range(0, n, 2)
                    if i != pos and cast(float, old[i + 1]) >= horizon
                    for item in (old[i], old[i + 1])
                )
            elif pos >= 0:
                kept = old[:pos] + old[pos + 2 :]
            else:
                kept = old
            size = (len(kept) >> 1) + 1
            if size <= _SMALL:
                data[key] = kept + (value, now)
            else:
                values: dict[Hashable, float] = {
                    kept[i]: cast(float, kept[i + 1]) for i in range(0, len(kept), 2)
                }
                values[value] = now
                data[key] = values
            return size, pos < 0
        data[key] = old
        _prune(old, horizon)
        new = value not in old
        if not new:
            del old[value]
        old[value] = now  # re-inserted last: the dict stays in last-seen order
        return len(old), new

    def count(self, key: Hashable, now: float) -> int:
        return len(self.values(key, now))

    def values(self, key: Hashable, now: float) -> list[Hashable]:
        """The values seen within the window, the one seen longest ago first."""
        old = self._data.get(key)
        if not old:
            return []
        horizon = now - self.window
        if isinstance(old, tuple):
            return [old[i] for i in range(0, len(old), 2) if cast(float, old[i + 1]) >= horizon]
        _prune(old, horizon)
        return list(old)

    def __len__(self) -> int:
        return len(self._data)


def _prune(values: dict[Hashable, float], horizon: float) -> None:
    """Drop the values last seen before ``horizon``. They are the oldest, first in the dict, so
    this stops at the first value still inside the window: O(expired)."""
    stale: list[Hashable] | None = None  # most calls find nothing stale: no list for them
    for value, seen in values.items():
        if seen >= horizon:
            break
        if stale is None:
            stale = []
        stale.append(value)
    if stale is not None:
        for value in stale:
            del values[value]


class EventWindow:
    """How many events each key had within the last ``window`` seconds (bounded keys)."""

    __slots__ = ("window", "max_keys", "_data")

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._data: dict[Hashable, deque[tuple[float, int]]] = {}

    def add(self, key: Hashable, now: float, amount: int = 1) -> int:
        times = self._data.pop(key, None)
        if times is None:
            times = deque()
            if len(self._data) >= self.max_keys:
                del self._data[next(iter(self._data))]
        self._data[key] = times
        times.append((now, amount))
        return self._total(times, now)

    def count(self, key: Hashable, now: float) -> int:
        times = self._data.get(key)
        return 0 if times is None else self._total(times, now)

    def _total(self, times: deque[tuple[float, int]], now: float) -> int:
        while times and now - times[0][0] > self.window:
            times.popleft()
        return sum(n for _, n in times)


class ConnectionCounter:
    """Open connections per client, from CONNECT requests minus ``disconnect`` log events.

    A lost disconnect line must not leak a slot forever, so each connection also expires after
    ``ttl`` seconds; a disconnect with nothing open (e.g. port 25, where no CONNECT request is
    sent) is ignored.
    """

    __slots__ = ("ttl", "max_keys", "_open")

    def __init__(self, ttl: float, max_keys: int = 100_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        # Keyed by the address as an int (an ``ip_address`` hashes in Python); the open
        # sessions' start times as a tuple of floats, which the cyclic collector stops tracking
        # after its first pass (a deque per client would be scanned by every full collection).
        self._open: dict[int, tuple[float, ...]] = {}

    def connect(self, ip: IPAddress, now: float) -> int:
        """Record a connection; return how many are open for ``ip``, this one included."""
        return self.connect_key(ip_key(ip), now)

    def connect_key(self, key: int, now: float) -> int:
        """``connect`` for the address whose ``ip_key`` this is."""
        times = self._open.get(key)
        if times is None:
            if len(self._open) >= self.max_keys:
                del self._open[next(iter(self._open))]
            times = ()
        times = (*self._live(times, now), now)
        self._open[key] = times
        return len(times)

    def disconnect(self, ip: IPAddress, now: float) -> None:
        """A session of ``ip`` ended."""
        key = ip_key(ip)
        times = self._open.get(key)
        if not times:
            return
        # which session ended does not matter, only how many remain
        times = self._live(times[1:], now)
        if times:
            self._open[key] = times
        else:
            del self._open[key]

    def open(self, ip: IPAddress, now: float) -> int:
        times = self._open.get(ip_key(ip))
        if times is None:
            return 0
        return len(self._live(times, now))

    def _live(self, times: tuple[float, ...], now: float) -> tuple[float, ...]:
        """``times`` without the sessions older than ``ttl`` (the oldest come first)."""
        for i, started in enumerate(times):
            if now - started <= self.ttl:
                return times[i:] if i else times
        return ()


class LogThrottle:
    """At most one log line per key per ``window`` seconds: a botnet retrying from one address
    must not write one line per attempt. For the rarer refusals; a server that remembers its
    clients keeps when each was last logged in that memory instead (one table per request)."""

    __slots__ = ("window", "max_keys", "_seen")

    def __init__(self, window: float = 60.0, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: dict[int, float] = {}  # key -> when it was last logged

    def allow(self, key: int, now: float) -> bool:
        seen = self._seen.get(key)
        if seen is not None and now - seen < self.window:
            return False
        if seen is None and len(self._seen) >= self.max_keys:
            self._seen.clear()  # only the rate of lines is lost, never a decision
        self._seen[key] = now
        return True


class LogBudget:
    """At most ``per_second`` refusal lines across all clients: once a minute per client is
    still 50,000 lines a minute from a botnet of 50,000 addresses. What is held back, here or
    by a per-client throttle (``hold``), is counted and said in the next line written."""

    __slots__ = ("gap", "next_at", "held")

    def __init__(self, per_second: float = 10.0) -> None:
        self.gap = 1.0 / per_second
        self.next_at = 0.0
        self.held = 0

    def hold(self) -> None:
        self.held += 1

    def take(self, now: float) -> int:
        """-1: not now (counted as held back); else the lines held back since the last one."""
        if now < self.next_at:
            self.held += 1
            return -1
        held = self.held
        self.held = 0
        self.next_at = now + self.gap
        return held


def held_back(count: int) -> str:
    """The tail of a throttled log line: how many like it were not written."""
    return f" ({count} more refusals not logged since the last line)" if count else ""


class NetSet:
    """Addresses and prefixes with an expiry; ``match`` costs one dict lookup per prefix length
    in use, whatever the number of entries (the in-line path must not scan a ban list)."""

    __slots__ = ("_entries", "_lengths", "changes")

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int, int], tuple[IPv4Network | IPv6Network, float]] = {}
        self._lengths: set[tuple[int, int]] = set()
        #: grows with every add and discard: what was derived from the set holds until it moves
        self.changes = 0

    @staticmethod
    def _key(net: IPv4Network | IPv6Network) -> tuple[int, int, int]:
        bits = 32 if net.version == 4 else 128
        return (net.version, net.prefixlen, int(net.network_address) >> (bits - net.prefixlen))

    def add(self, net: IPv4Network | IPv6Network, until: float = float("inf")) -> None:
        self._entries[self._key(net)] = (net, until)
        self._lengths.add((net.version, net.prefixlen))
        self.changes += 1

    def discard(self, net: IPv4Network | IPv6Network) -> None:
        if self._entries.pop(self._key(net), None) is not None:
            self.changes += 1

    def match(self, ip: IPAddress, now: float) -> IPv4Network | IPv6Network | None:
        """The live entry containing ``ip``; expired entries found on the way are dropped."""
        entry = self.entry(ip, now)
        return None if entry is None else entry[0]

    def entry(self, ip: IPAddress, now: float) -> tuple[IPv4Network | IPv6Network, float] | None:
        """``match`` with the entry's expiry: (network, until)."""
        return self.entry_of(ip_key(ip), now)

    def entry_of(self, key: int, now: float) -> tuple[IPv4Network | IPv6Network, float] | None:
        """``entry`` for the address whose ``ip_key`` is ``key``."""
        if not self._entries:
            return None
        if key < IPV6_KEY_FLAG:
            version, value, bits = 4, key, 32
        else:
            version, value, bits = 6, key ^ IPV6_KEY_FLAG, 128
        for v, length in self._lengths:
            if v != version:
                continue
            slot = (v, length, value >> (bits - length))
            hit = self._entries.get(slot)
            if hit is not None:
                if hit[1] > now:
                    return hit
                del self._entries[slot]
        return None

    def __contains__(self, net: object) -> bool:
        if not isinstance(net, IPv4Network | IPv6Network):
            return False
        return self._key(net) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
