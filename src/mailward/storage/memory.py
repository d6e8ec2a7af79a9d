"""``MemoryStore``: the in-memory twin of ``SqliteStore`` for tests and ``--dry-run`` graphs.

Same methods, same answers (a test feeds both the same data and compares every query), no file.
Not meant for volume: window queries scan a sorted list.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from mailward.decisions.model import Action, Decision
from mailward.events import Event
from mailward.storage.reader import Alert, HourCount, PruneResult, in_force

DAY = 86400.0
IPAddress = IPv4Address | IPv6Address


def _ip_order(ip: IPAddress) -> tuple[int, int]:
    # The SQLite store sorts IPv4 (integers) before IPv6 (blobs); mirror it.
    return (0 if isinstance(ip, IPv4Address) else 1, int(ip))


@dataclass(order=True)
class _Row:
    ts: float
    seq: int
    event: Event = field(compare=False)


class MemoryStore:
    """Everything in lists and dicts. ``retention_days`` as in ``SqliteStore``."""

    def __init__(self, *, retention_days: int = 400) -> None:
        self.retention_days = retention_days
        self._events: list[_Row] = []
        self._decisions: list[tuple[int, Decision]] = []
        self._alerts: list[tuple[int, Alert]] = []
        self._imports: dict[str, int] = {}
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -- writes -----------------------------------------------------------------------------
    def add_events(self, events: Iterable[Event]) -> int:
        rows = [_Row(ev.ts, self._next(), ev) for ev in events]
        for row in rows:
            bisect.insort(self._events, row)
        return len(rows)

    def import_batch(
        self, identity: str, offset: int, events: Iterable[Event], *, path: str | None = None
    ) -> int:
        batch = list(events)  # materialised first, so a failing source stores nothing
        self.set_import_position(identity, offset, path=path)
        return self.add_events(batch)

    def set_import_position(self, identity: str, offset: int, *, path: str | None = None) -> None:
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._imports[identity] = offset

    def add_decision(self, decision: Decision) -> int:
        seq = self._next()
        bisect.insort(self._decisions, (seq, decision), key=lambda x: (x[1].ts, x[0]))
        return seq

    def add_alert(self, alert: Alert) -> int:
        seq = self._next()
        bisect.insort(self._alerts, (seq, alert), key=lambda x: (x[1].ts, x[0]))
        return seq

    def prune(self, now: float, *, compact: bool = False) -> PruneResult:
        cutoff = now - self.retention_days * DAY
        n_ev = len(self._events)
        self._events = [r for r in self._events if r.ts >= cutoff]

        def expired(d: Decision) -> bool:
            if d.ts >= cutoff:
                return False
            if d.action is Action.UNBAN:
                return True
            return d.until is not None and d.until < now

        n_de = len(self._decisions)
        self._decisions = [(s, d) for s, d in self._decisions if not expired(d)]
        n_al = len(self._alerts)
        self._alerts = [(s, a) for s, a in self._alerts if a.ts >= cutoff]
        return PruneResult(
            cutoff,
            n_ev - len(self._events),
            n_de - len(self._decisions),
            n_al - len(self._alerts),
            0,
        )

    def close(self) -> None:
        pass

    # -- reads ------------------------------------------------------------------------------
    def import_position(self, identity: str) -> int:
        return self._imports.get(identity, 0)

    def _window(
        self, since: float | None, until: float | None, kinds: Iterable[str] | None
    ) -> Iterator[Event]:
        lo = 0 if since is None else bisect.bisect_left(self._events, since, key=lambda r: r.ts)
        hi = (
            len(self._events)
            if until is None
            else bisect.bisect_left(self._events, until, key=lambda r: r.ts)
        )
        wanted = None if kinds is None else set(kinds)
        for row in self._events[lo:hi]:
            if wanted is None or row.event.kind in wanted:
                yield row.event

    def events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Event]:
        return iter(list(self._window(since, until, kinds)))

    def count_events(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> int:
        return sum(1 for _ in self._window(since, until, kinds))

    def span(self) -> tuple[float, float] | None:
        if not self._events:
            return None
        return (float(self._events[0].ts), float(self._events[-1].ts))

    @staticmethod
    def _weight(ev: Event) -> int:
        attempts: Any = getattr(ev, "attempts", 1)
        return attempts if isinstance(attempts, int) else 1

    def counts_per_hour(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[HourCount]:
        n: Counter[tuple[int, str]] = Counter()
        att: Counter[tuple[int, str]] = Counter()
        ips: defaultdict[tuple[int, str], set[IPAddress]] = defaultdict(set)
        for ev in self._window(since, until, kinds):
            key = (int(ev.ts // 3600), ev.kind)
            n[key] += 1
            att[key] += self._weight(ev)
            ips[key]  # noqa: B018 - a bucket with no addresses still counts 0
            if ev.ip is not None:
                ips[key].add(ev.ip)
        return [
            HourCount(float(h * 3600), k, n[(h, k)], att[(h, k)], len(ips[(h, k)]))
            for h, k in sorted(n)
        ]

    def top_ips(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[IPAddress, int]]:
        c: Counter[IPAddress] = Counter()
        for ev in self._window(since, until, kinds):
            if ev.ip is not None:
                c[ev.ip] += self._weight(ev)
        return sorted(c.items(), key=lambda kv: (-kv[1], _ip_order(kv[0])))[:limit]

    def top_prefixes(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
        *,
        v4: int = 24,
        v6: int = 64,
    ) -> list[tuple[IPv4Network | IPv6Network, int, int]]:
        if not 0 < v4 <= 32 or v6 % 8 or not 0 < v6 <= 128:
            raise ValueError("prefix lengths: v4 in 1..32, v6 a multiple of 8 in 8..128")
        n: Counter[IPv4Network | IPv6Network] = Counter()
        ips: defaultdict[IPv4Network | IPv6Network, set[IPAddress]] = defaultdict(set)
        for ev in self._window(since, until, kinds):
            if ev.ip is None:
                continue
            net: IPv4Network | IPv6Network
            if isinstance(ev.ip, IPv4Address):
                net = IPv4Network((ev.ip, v4), strict=False)
            else:
                net = IPv6Network((ev.ip, v6), strict=False)
            n[net] += self._weight(ev)
            ips[net].add(ev.ip)
        ranked = sorted(n.items(), key=lambda kv: (-kv[1], _ip_order(kv[0].network_address)))
        return [(net, count, len(ips[net])) for net, count in ranked[:limit]]

    def top_usernames(
        self,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[tuple[str, int]]:
        c: Counter[str] = Counter()
        for ev in self._window(since, until, kinds):
            user = getattr(ev, "username", None)
            if user is None:
                user = getattr(ev, "recipient", None)
            if isinstance(user, str):
                c[user] += self._weight(ev)
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def decisions(
        self, since: float | None = None, until: float | None = None, *, target: str | None = None
    ) -> list[Decision]:
        return [
            d
            for _, d in self._decisions
            if (since is None or d.ts >= since)
            and (until is None or d.ts < until)
            and (target is None or d.target == target)
        ]

    def active_decisions(self, now: float) -> list[Decision]:
        decided = [d for _, d in self._decisions if d.ts <= now]
        return in_force(
            [
                d
                for d in decided
                if d.action is not Action.UNBAN and (d.until is None or d.until > now)
            ],
            [d for d in decided if d.action is Action.UNBAN],
            now,
        )

    def offences(self, target: str, since: float) -> int:
        return sum(
            1
            for _, d in self._decisions
            if d.target == target and d.ts >= since and d.action is Action.BAN
        )

    def alerts(self, since: float | None = None, until: float | None = None) -> list[Alert]:
        return [
            a
            for _, a in self._alerts
            if (since is None or a.ts >= since) and (until is None or a.ts < until)
        ]
