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

from mailward.analyze.counting import BoundedCounter, DistinctSketch
from mailward.events import (
    IPV6_KEY_FLAG,
    AuthFailure,
    AuthSuccess,
    Event,
    IPAddress,
    UnknownRecipient,
    ip_key,
)

HOUR = 3600
DAY = 86400
BUCKET_TOP = 25  # addresses kept per closed hour, enough to name who caused a spike
OPEN_HOURS = 30  # how far out of order events may arrive before an hour is summarised
OPEN_DAYS = 3

# Per-address slot in Aggregator._ips, a small list (cheaper than an object per address):
# [failed attempts, unknown-recipient probes, successes, current minute, attempts in it, excluded]


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


V6 = IPV6_KEY_FLAG  # per-address tables key IPv6 as int(ip) | V6, IPv4 as int(ip) (ip_key)
_MASK128 = V6 - 1


def key_ip(key: int) -> IPAddress:
    return IPv6Address(key & _MASK128) if key & V6 else IPv4Address(key)


def _prefix_text(pkey: int) -> str:
    if pkey >> 64:  # an IPv6 /64 key is (key >> 64): the V6 flag lands on bit 64
        return f"{IPv6Address((pkey & ((1 << 64) - 1)) << 64)}/64"
    return f"{IPv4Address(pkey << 8)}/24"


def _prefix_key(key: int) -> int:
    return key >> 64 if key & V6 else key >> 8


class _OpenBucket:
    __slots__ = ("attempts", "ips", "probes", "successes", "users")

    def __init__(self) -> None:
        self.attempts = 0
        self.probes = 0
        self.successes = 0
        self.ips: dict[int, int] = {}
        self.users: dict[str, int] = {}

    def close(self, keep: int) -> HourStat:
        top = [(key_ip(k), n) for k, n in sorted(self.ips.items(), key=lambda kv: -kv[1])[:keep]]
        users = sorted(self.users.items(), key=lambda kv: -kv[1])[:5]
        nets: dict[int, list[int]] = {}
        for key, n in self.ips.items():
            pk = key >> 64 if key & V6 else key >> 8
            entry = nets.get(pk)
            if entry is None:
                nets[pk] = [n, 1]
            else:
                entry[0] += n
                entry[1] += 1
        best = sorted(nets.items(), key=lambda kv: -kv[1][1])[:3]
        prefixes = [(_prefix_text(pk), v[0], v[1]) for pk, v in best]
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
    """Feed events with ``add``; read the tables after the stream ends (call ``finish`` first).

    Only failures, unknown-recipient rejects and successes touch the per-address tables; other
    events are counted by kind. The hot path avoids ipaddress hashing and enum lookups: at a few
    hundred thousand events per second the analysis must not cost more than the parse.
    """

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
        self._lo = float("inf")
        self._hi = float("-inf")
        self.kinds: dict[str, int] = {}
        self.attempts = 0
        self.reasons: dict[str, int] = {}
        self.services: dict[str, int] = {}
        self.no_ip_attempts = 0
        self.excluded_events = 0
        self.ips_pruned = 0
        self._ips: dict[int, list[int]] = {}
        self.usernames = BoundedCounter(max_names)
        self.user_ips: dict[str, DistinctSketch] = {}
        self.recipients = BoundedCounter(max_names)
        self._success_users: dict[int, set[str]] = {}
        self.hours: dict[int, HourStat] = {}
        self.days: dict[int, HourStat] = {}
        self._open_hours: dict[int, _OpenBucket] = {}
        self._open_days: dict[int, _OpenBucket] = {}
        self._hour_key = -1
        self._hour_bucket = _OpenBucket()
        self._day_key = -1
        self._day_bucket = _OpenBucket()
        self._exceed: dict[int, _ExceedState] = {}
        self._finished = False

    # -- feeding ----------------------------------------------------------------------------------

    def add_all(self, events: Iterable[Event]) -> Aggregator:
        for event in events:
            self.add(event)  # a direct call when compiled; a bound method would not be
        self.finish()
        return self

    def add(self, event: Event) -> None:
        ts = event.ts
        if ts < self._lo:
            self._lo = ts
        if ts > self._hi:
            self._hi = ts
        kinds = self.kinds
        kind = event.kind
        kinds[kind] = kinds.get(kind, 0) + 1
        cls = type(event)
        if cls is AuthFailure:
            self._failure(event, ts)  # type: ignore[arg-type]
        elif cls is UnknownRecipient:
            self._probe(event, ts)  # type: ignore[arg-type]
        elif cls is AuthSuccess:
            self._success(event, ts)  # type: ignore[arg-type]

    def _slot(self, key: int, ip: IPAddress) -> list[int]:
        slot = [0, 0, 0, -1, 0, int(self._is_excluded(ip))]
        self._ips[key] = slot
        if len(self._ips) > self.max_ips:
            self._prune_ips()
        return slot

    def _buckets(self, its: int) -> tuple[_OpenBucket, _OpenBucket]:
        hk = its // HOUR
        if hk != self._hour_key:
            bucket = self._open_hours.get(hk)
            if bucket is None:
                bucket = self._open(self._open_hours, self.hours, hk, OPEN_HOURS, BUCKET_TOP)
            self._hour_key, self._hour_bucket = hk, bucket
        dk = its // DAY
        if dk != self._day_key:
            bucket = self._open_days.get(dk)
            if bucket is None:
                bucket = self._open(self._open_days, self.days, dk, OPEN_DAYS, 10)
            self._day_key, self._day_bucket = dk, bucket
        return self._hour_bucket, self._day_bucket

    def _failure(self, event: AuthFailure, ts: float) -> None:
        ip = event.ip
        key = 0
        slot: list[int] | None = None
        if ip is not None:
            key = int(ip) if type(ip) is IPv4Address else int(ip) | V6
            slot = self._ips.get(key)
            if slot is None:
                slot = self._slot(key, ip)
            if slot[5]:
                self.excluded_events += 1
                return
        n = event.attempts
        if n < 1:
            n = 1
        self.attempts += n
        reasons = self.reasons
        reason = event.reason  # a StrEnum: hashes and prints as its value
        reasons[reason] = reasons.get(reason, 0) + n
        services = self.services
        service = event.service
        services[service] = services.get(service, 0) + n
        its = int(ts)
        hour, day = self._buckets(its)
        hour.attempts += n
        day.attempts += n
        user = event.username
        if user is not None:
            counts = self.usernames.counts
            c = counts.get(user)
            if c is None:
                counts[user] = n
                if len(counts) > self.usernames.cap:
                    self.usernames._prune()
            else:
                counts[user] = c + n
            hu = hour.users
            hu[user] = hu.get(user, 0) + n
        if slot is None:
            self.no_ip_attempts += n
            return
        slot[0] += n
        hips = hour.ips
        hips[key] = hips.get(key, 0) + n
        dips = day.ips
        dips[key] = dips.get(key, 0) + n
        if user is not None:
            sketch = self.user_ips.get(user)
            if sketch is None:
                sketch = self.user_ips[user] = DistinctSketch()
            sketch.add(key)
        minute = its // 60
        if slot[3] == minute:
            slot[4] += n
        else:
            if slot[4] > self.rate_limit:
                self._close_minute(key, slot)
            slot[3] = minute
            slot[4] = n

    def _counted_slot(self, ip: IPAddress) -> tuple[int, list[int]] | None:
        """The address's slot, or None (counted as excluded) for an excluded address."""
        key = ip_key(ip)
        slot = self._ips.get(key)
        if slot is None:
            slot = self._slot(key, ip)
        if slot[5]:
            self.excluded_events += 1
            return None
        return key, slot

    def _probe(self, event: UnknownRecipient, ts: float) -> None:
        if event.ip is not None:
            found = self._counted_slot(event.ip)
            if found is None:
                return
            found[1][1] += 1
        if event.recipient is not None:
            self.recipients.add(event.recipient.lower())
        hour, day = self._buckets(int(ts))
        hour.probes += 1
        day.probes += 1

    def _success(self, event: AuthSuccess, ts: float) -> None:
        if event.ip is not None:
            found = self._counted_slot(event.ip)
            if found is None:
                return
            key, slot = found
            slot[2] += 1
            if slot[0] and event.username is not None:
                users = self._success_users.setdefault(key, set())
                if len(users) < 20:
                    users.add(event.username)
        hour, day = self._buckets(int(ts))
        hour.successes += 1
        day.successes += 1

    def _close_minute(self, key: int, slot: list[int]) -> None:
        count = slot[4]
        if count <= self.rate_limit:
            return
        minute = slot[3]
        state = self._exceed.get(key)
        if state is None:
            state = self._exceed[key] = _ExceedState(minute, count)
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
        exceed = self._exceed
        keep = {
            k: s
            for k, s in self._ips.items()
            if s[0] > 1 or s[1] > 1 or s[2] or s[5] or k in exceed
        }
        if len(keep) > self.max_ips * 0.9:
            floor = sorted(s[0] for s in keep.values())[len(keep) // 2]
            keep = {k: s for k, s in keep.items() if s[0] > floor or s[2]}
        self._ips = keep
        self.ips_pruned += before - len(keep)

    # -- buckets ----------------------------------------------------------------------------------

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
        if self._lo <= self._hi:
            self.first_ts, self.last_ts = self._lo, self._hi
        for opened, closed, keep in (
            (self._open_hours, self.hours, BUCKET_TOP),
            (self._open_days, self.days, 10),
        ):
            for key, bucket in opened.items():
                stat = bucket.close(keep)
                prev = closed.get(key)
                closed[key] = stat if prev is None else _merge(prev, stat)
            opened.clear()
        for key, slot in self._ips.items():
            if slot[4]:
                self._close_minute(key, slot)
                slot[4] = 0

    # -- reading ----------------------------------------------------------------------------------

    def ip_attempts(self) -> dict[IPAddress, int]:
        return {key_ip(k): s[0] for k, s in self._ips.items() if s[0] and not s[5]}

    def ip_probes(self) -> dict[IPAddress, int]:
        return {key_ip(k): s[1] for k, s in self._ips.items() if s[1] and not s[5]}

    def ip_successes(self) -> dict[IPAddress, int]:
        return {key_ip(k): s[2] for k, s in self._ips.items() if s[2] and not s[5]}

    def success_usernames(self, ip: IPAddress) -> set[str]:
        """Usernames an address logged in as after it had failed at least once."""
        return set(self._success_users.get(ip_key(ip), ()))

    def rate_exceeded(self) -> list[RateExceed]:
        out = [
            RateExceed(
                ip=key_ip(key),
                peak_per_minute=st.peak,
                peak_minute=st.peak_minute * 60.0,
                first=st.first * 60.0,
                last=st.last * 60.0,
                minutes_over=st.minutes,
                attempts_over=st.attempts_over,
            )
            for key, st in self._exceed.items()
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
    return _prefix_text(_prefix_key(ip_key(ip)))
