"""One pass over a stream of correlated events into the counters the report is built from.

Memory is bounded by the number of distinct client addresses, usernames and recipients (each table
capped, pruned when over, and then marked approximate), plus a few open hour/day buckets: per-bucket
detail (which addresses, how many distinct) is kept exactly while a bucket is open and summarised to
a top list when the stream moves on. Input is expected roughly in time order (rotated files oldest
first); an event for an already summarised bucket still counts but marks that bucket approximate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Event,
    FailReason,
    IPAddress,
    UnknownRecipient,
)

HOUR = 3600
DAY = 86400
BUCKET_TOP = 25  # addresses kept per closed hour, enough to name who caused a spike
OPEN_HOURS = 30  # how far out of order events may arrive before an hour is summarised
OPEN_DAYS = 3

# Per-address slots in Aggregator._ips (a list per address keeps memory per address small).
_ATT, _PROBES, _OK, _MIN, _MIN_N, _EXCLUDED = range(6)


class BoundedCounter:
    """A dict counter that prunes its smallest entries when it grows past ``cap`` keys."""

    __slots__ = ("cap", "counts", "pruned")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.pruned = 0  # keys dropped so far: when > 0, small counts are approximate

    def add(self, key: str, n: int = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + n
        if len(counts) > self.cap:
            self._prune()

    def _prune(self) -> None:
        ordered = sorted(self.counts.values())
        floor = ordered[len(ordered) // 2]
        before = len(self.counts)
        self.counts = {k: v for k, v in self.counts.items() if v > floor}
        self.pruned += before - len(self.counts)

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _mix(x: int) -> int:
    """A 64-bit mixing hash (splitmix64 finaliser): addresses are sequential, hashes must not be."""
    x = (x ^ (x >> 64)) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class DistinctSketch:
    """Distinct count: exact up to ``k`` values, then a K-minimum-values estimate (error ~1/sqrt k)."""

    __slots__ = ("k", "values")

    def __init__(self, k: int = 128) -> None:
        self.k = k
        self.values: set[int] = set()

    def add(self, value: int) -> None:
        h = _mix(value)
        values = self.values
        if h in values:
            return
        if len(values) < self.k:
            values.add(h)
            return
        worst = max(values)
        if h < worst:
            values.discard(worst)
            values.add(h)

    @property
    def exact(self) -> bool:
        return len(self.values) < self.k

    def estimate(self) -> int:
        if self.exact:
            return len(self.values)
        return round((self.k - 1) * 2**64 / max(self.values))


@dataclass(slots=True)
class HourStat:
    """One time bucket, summarised: attempts, distinct addresses, and who made the most."""

    attempts: int = 0
    distinct_ips: int = 0
    probes: int = 0
    successes: int = 0
    top_ips: list[tuple[IPAddress, int]] = field(default_factory=list)
    top_users: list[tuple[str, int]] = field(default_factory=list)
    top_prefixes: list[tuple[str, int, int]] = field(
        default_factory=list
    )  # (cidr, attempts, addrs)
    approximate: bool = False


class _OpenBucket:
    __slots__ = ("attempts", "ips", "probes", "successes", "users")

    ips: dict[IPAddress, int]

    def __init__(self) -> None:
        self.attempts = 0
        self.probes = 0
        self.successes = 0
        self.ips: dict[IPAddress, int] = {}
        self.users: dict[str, int] = {}

    def close(self, keep: int) -> HourStat:
        top = sorted(self.ips.items(), key=lambda kv: -kv[1])[:keep]
        users = sorted(self.users.items(), key=lambda kv: -kv[1])[:5]
        nets: dict[str, list[int]] = {}
        for ip, n in self.ips.items():
            entry = nets.setdefault(prefix_of(ip), [0, 0])
            entry[0] += n
            entry[1] += 1
        prefixes = sorted(((k, v[0], v[1]) for k, v in nets.items()), key=lambda t: -t[2])[:3]
        return HourStat(
            self.attempts, len(self.ips), self.probes, self.successes, top, users, prefixes
        )


@dataclass(frozen=True, slots=True)
class RateExceed:
    """A client whose failed logins in one calendar minute went over the configured limit."""

    ip: IPAddress
    peak_per_minute: int
    peak_minute: float  # POSIX start of the worst minute
    first: float  # first minute over the limit
    last: float  # last minute over the limit
    minutes_over: int
    attempts_over: int  # failed attempts made in minutes over the limit


class _ExceedState:
    __slots__ = ("attempts_over", "first", "last", "minutes", "peak", "peak_minute")

    def __init__(self, minute: int, count: int) -> None:
        self.peak = count
        self.peak_minute = minute
        self.first = minute
        self.last = minute
        self.minutes = 0
        self.attempts_over = 0


class Aggregator:
    """Feed events with ``add``; read the tables after the stream ends (call ``finish`` first)."""

    def __init__(
        self,
        *,
        rate_limit_per_minute: int = 3,
        excluded: Sequence[object] = (),
        max_ips: int = 1_000_000,
        max_names: int = 200_000,
    ) -> None:
        self.rate_limit = rate_limit_per_minute
        self._excluded_nets = list(excluded)
        self.max_ips = max_ips
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.kinds: dict[str, int] = {}
        self.attempts = 0
        self.reasons: dict[str, int] = {}
        self.services: dict[str, int] = {}
        self.no_ip_attempts = 0
        self.excluded_events = 0
        self.ips_pruned = 0
        self._ips: dict[IPAddress, list[int]] = {}
        self.usernames = BoundedCounter(max_names)
        self.user_ips: dict[str, DistinctSketch] = {}
        self.recipients = BoundedCounter(max_names)
        self.success_users: dict[IPAddress, set[str]] = {}
        self.hours: dict[int, HourStat] = {}
        self.days: dict[int, HourStat] = {}
        self._open_hours: dict[int, _OpenBucket] = {}
        self._open_days: dict[int, _OpenBucket] = {}
        self._exceed: dict[IPAddress, _ExceedState] = {}
        self._finished = False

    # -- feeding ----------------------------------------------------------------------------------

    def add_all(self, events: Iterable[Event]) -> Aggregator:
        add = self.add
        for event in events:
            add(event)
        self.finish()
        return self

    def add(self, event: Event) -> None:
        ts = event.ts
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        kind = event.kind
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        ip = event.ip
        slot: list[int] | None = None
        if ip is not None:
            slot = self._ips.get(ip)
            if slot is None:
                slot = [0, 0, 0, -1, 0, int(self._is_excluded(ip))]
                self._ips[ip] = slot
                if len(self._ips) > self.max_ips:
                    self._prune_ips()
            if slot[_EXCLUDED]:
                self.excluded_events += 1
                return
        if isinstance(event, AuthFailure):
            self._failure(event, ts, ip, slot)
        elif isinstance(event, UnknownRecipient):
            if slot is not None:
                slot[_PROBES] += 1
            if event.recipient is not None:
                self.recipients.add(event.recipient.lower())
            self._hour(ts).probes += 1
            self._day(ts).probes += 1
        elif isinstance(event, AuthSuccess):
            if slot is not None and ip is not None:
                slot[_OK] += 1
                if slot[_ATT] and event.username is not None:
                    users = self.success_users.setdefault(ip, set())
                    if len(users) < 20:
                        users.add(event.username)
            self._hour(ts).successes += 1
            self._day(ts).successes += 1

    def _failure(
        self, event: AuthFailure, ts: float, ip: IPAddress | None, slot: list[int] | None
    ) -> None:
        n = max(1, event.attempts)
        self.attempts += n
        reason = event.reason.value if isinstance(event.reason, FailReason) else str(event.reason)
        self.reasons[reason] = self.reasons.get(reason, 0) + n
        service = event.service.value
        self.services[service] = self.services.get(service, 0) + n
        hour = self._hour(ts)
        day = self._day(ts)
        hour.attempts += n
        day.attempts += n
        user = event.username
        if user is not None:
            self.usernames.add(user, n)
            hour.users[user] = hour.users.get(user, 0) + n
        if ip is None or slot is None:
            self.no_ip_attempts += n
            return
        slot[_ATT] += n
        hour.ips[ip] = hour.ips.get(ip, 0) + n
        day.ips[ip] = day.ips.get(ip, 0) + n
        if user is not None:
            sketch = self.user_ips.get(user)
            if sketch is None:
                sketch = self.user_ips[user] = DistinctSketch()
            sketch.add(int(ip))
        minute = int(ts) // 60
        if slot[_MIN] == minute:
            slot[_MIN_N] += n
        else:
            self._close_minute(ip, slot)
            slot[_MIN] = minute
            slot[_MIN_N] = n

    def _close_minute(self, ip: IPAddress, slot: list[int]) -> None:
        count = slot[_MIN_N]
        if count <= self.rate_limit:
            return
        minute = slot[_MIN]
        state = self._exceed.get(ip)
        if state is None:
            state = self._exceed[ip] = _ExceedState(minute, count)
        if count > state.peak:
            state.peak, state.peak_minute = count, minute
        state.first = min(state.first, minute)
        state.last = max(state.last, minute)
        state.minutes += 1
        state.attempts_over += count

    def _is_excluded(self, ip: IPAddress) -> bool:
        for net in self._excluded_nets:
            try:
                if ip in net:  # type: ignore[operator]
                    return True
            except TypeError:
                continue
        return False

    def _prune_ips(self) -> None:
        # Drop the one-attempt addresses with nothing else to say: the long tail of a huge botnet.
        before = len(self._ips)
        keep = {
            ip: s
            for ip, s in self._ips.items()
            if s[_ATT] > 1 or s[_PROBES] > 1 or s[_OK] or s[_EXCLUDED] or ip in self._exceed
        }
        if len(keep) > self.max_ips * 0.9:
            floor = sorted(s[_ATT] for s in keep.values())[len(keep) // 2]
            keep = {ip: s for ip, s in keep.items() if s[_ATT] > floor or s[_OK]}
        self._ips = keep
        self.ips_pruned += before - len(keep)

    # -- buckets ----------------------------------------------------------------------------------

    def _hour(self, ts: float) -> _OpenBucket:
        key = int(ts) // HOUR
        bucket = self._open_hours.get(key)
        if bucket is None:
            bucket = self._open(self._open_hours, self.hours, key, OPEN_HOURS, BUCKET_TOP)
        return bucket

    def _day(self, ts: float) -> _OpenBucket:
        key = int(ts) // DAY
        bucket = self._open_days.get(key)
        if bucket is None:
            bucket = self._open(self._open_days, self.days, key, OPEN_DAYS, 10)
        return bucket

    @staticmethod
    def _open(
        opened: dict[int, _OpenBucket],
        closed: dict[int, HourStat],
        key: int,
        limit: int,
        keep: int,
    ) -> _OpenBucket:
        bucket = _OpenBucket()
        opened[key] = bucket
        if len(opened) > limit:
            oldest = min(k for k in opened if k != key)  # a late bucket stays open a while
            done = opened.pop(oldest)
            stat = done.close(keep)
            prev = closed.get(oldest)
            if prev is not None:  # reopened after it was summarised: merge, inexactly
                stat = _merge(prev, stat)
            closed[oldest] = stat
        return bucket

    def finish(self) -> None:
        """Close open buckets and minutes. Idempotent; call before reading the tables."""
        if self._finished:
            return
        self._finished = True
        for opened, closed, keep in (
            (self._open_hours, self.hours, BUCKET_TOP),
            (self._open_days, self.days, 10),
        ):
            for key, bucket in opened.items():
                stat = bucket.close(keep)
                prev = closed.get(key)
                closed[key] = stat if prev is None else _merge(prev, stat)
            opened.clear()
        for ip, slot in self._ips.items():
            if slot[_MIN_N]:
                self._close_minute(ip, slot)
                slot[_MIN_N] = 0

    # -- reading ----------------------------------------------------------------------------------

    def ip_attempts(self) -> dict[IPAddress, int]:
        return {ip: s[_ATT] for ip, s in self._ips.items() if s[_ATT] and not s[_EXCLUDED]}

    def ip_probes(self) -> dict[IPAddress, int]:
        return {ip: s[_PROBES] for ip, s in self._ips.items() if s[_PROBES] and not s[_EXCLUDED]}

    def ip_successes(self) -> dict[IPAddress, int]:
        return {ip: s[_OK] for ip, s in self._ips.items() if s[_OK] and not s[_EXCLUDED]}

    def rate_exceeded(self) -> list[RateExceed]:
        out = [
            RateExceed(
                ip=ip,
                peak_per_minute=st.peak,
                peak_minute=st.peak_minute * 60.0,
                first=st.first * 60.0,
                last=st.last * 60.0,
                minutes_over=st.minutes,
                attempts_over=st.attempts_over,
            )
            for ip, st in self._exceed.items()
        ]
        out.sort(key=lambda r: (-r.attempts_over, -r.peak_per_minute, str(r.ip)))
        return out

    @property
    def approximate(self) -> bool:
        return bool(
            self.ips_pruned
            or self.usernames.pruned
            or self.recipients.pruned
            or any(h.approximate for h in self.hours.values())
        )


def _merge(a: HourStat, b: HourStat) -> HourStat:
    ips: dict[IPAddress, int] = {}
    for ip, n in (*a.top_ips, *b.top_ips):
        ips[ip] = ips.get(ip, 0) + n
    users: dict[str, int] = {}
    for u, n in (*a.top_users, *b.top_users):
        users[u] = users.get(u, 0) + n
    nets: dict[str, list[int]] = {}
    for cidr, n, k in (*a.top_prefixes, *b.top_prefixes):
        entry = nets.setdefault(cidr, [0, 0])
        entry[0] += n
        entry[1] = max(entry[1], k)
    return HourStat(
        attempts=a.attempts + b.attempts,
        distinct_ips=max(a.distinct_ips, b.distinct_ips),
        probes=a.probes + b.probes,
        successes=a.successes + b.successes,
        top_ips=sorted(ips.items(), key=lambda kv: -kv[1])[: max(len(a.top_ips), len(b.top_ips))],
        top_users=sorted(users.items(), key=lambda kv: -kv[1])[:5],
        top_prefixes=sorted(((c, v[0], v[1]) for c, v in nets.items()), key=lambda t: -t[2])[:3],
        approximate=True,
    )


def prefix_of(ip: IPAddress) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to, as CIDR text."""
    if isinstance(ip, IPv4Address):
        return f"{IPv4Address(int(ip) & 0xFFFFFF00)}/24"
    return f"{IPv6Address(int(ip) & ~((1 << 64) - 1))}/64"
